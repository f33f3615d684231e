//! Chemical symbols and atomic numbers (H..Og).

/// Symbols indexed by atomic number (index 0 is a placeholder).
pub const SYMBOLS: [&str; 119] = [
    "X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
    "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd",
    "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm",
    "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn",
    "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
];

/// The chemical symbol of atomic number `z`, or "?" when out of range.
pub fn symbol(z: i32) -> &'static str {
    if z >= 1 && (z as usize) < SYMBOLS.len() {
        SYMBOLS[z as usize]
    } else {
        "?"
    }
}

/// The atomic number of a chemical symbol (case-sensitive, e.g. "Cu"), if it is one.
pub fn atomic_number(sym: &str) -> Option<i32> {
    SYMBOLS
        .iter()
        .skip(1)
        .position(|s| *s == sym)
        .map(|i| i as i32 + 1)
}
