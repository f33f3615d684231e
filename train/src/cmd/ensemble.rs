//! `hydragnn ensemble A.model B.model ... -o ENS.model`: K model files (one species list, one
//! cutoff, one layer count) → one ensemble file ([`mlip::ensemble`], docs/ensembles.md).

use std::path::PathBuf;

use super::outln;

/// Arguments of `hydragnn ensemble`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The member model files, member 0 first (DeePMD's convention: member 0 can drive the
    /// dynamics).
    #[arg(required = true)]
    members: Vec<PathBuf>,
    /// The ensemble file to write.
    #[arg(short, long)]
    out: PathBuf,
}

/// Builds the ensemble file and prints what was written.
pub fn run(a: Args) -> anyhow::Result<()> {
    mlip::ensemble::build(&a.members, &a.out)?;
    let e = mlip::ensemble::Ensemble::load(&a.out, tch::Kind::Double, tch::Device::Cpu)?;
    let m0 = &e.members[0];
    outln!(
        "wrote {}: {} members, cutoff {} Å, {} layers, species {}",
        a.out.display(),
        e.len(),
        m0.cutoff(),
        m0.num_layers(),
        m0.species()
            .iter()
            .map(|&z| mlip::elements::symbol(z))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    Ok(())
}
