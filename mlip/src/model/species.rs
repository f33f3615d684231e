//! The species index: the position of an atomic number in a model's species list, which is what
//! the embedding (or raw-feature table) and the reference energies are indexed by.

/// Maps atomic numbers (0..=118) to species indices, for a model's species list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeciesIndex {
    /// Species index of every atomic number; -1: not a species of the model.
    table: [i64; 119],
}

impl SpeciesIndex {
    /// The index of `species` (atomic numbers in species-index order; each in 1..=118, as
    /// [`crate::model::config::ModelConfig::validate`] checks).
    pub fn new(species: &[i32]) -> Self {
        let mut table = [-1i64; 119];
        for (k, &z) in species.iter().enumerate() {
            table[z as usize] = k as i64;
        }
        SpeciesIndex { table }
    }

    /// The species index of atomic number `z`, if the model knows it.
    pub fn get(&self, z: i32) -> Option<i64> {
        usize::try_from(z)
            .ok()
            .and_then(|z| self.table.get(z))
            .copied()
            .filter(|&k| k >= 0)
    }

    /// The species index of every atom, or `Err((atom, z))` for the first atom whose atomic
    /// number the model does not know.
    pub fn indices(&self, numbers: &[i32]) -> std::result::Result<Vec<i64>, (usize, i32)> {
        numbers
            .iter()
            .enumerate()
            .map(|(i, &z)| self.get(z).ok_or((i, z)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_known_species_and_rejects_others() {
        let s = SpeciesIndex::new(&[29, 1, 8]);
        assert_eq!(s.indices(&[1, 8, 29, 29]), Ok(vec![1, 2, 0, 0]));
        assert_eq!(s.indices(&[1, 6]), Err((1, 6)));
        assert_eq!(s.get(-1), None);
        assert_eq!(s.get(119), None);
        assert_eq!(s.get(0), None);
    }
}
