//! DDStore benchmark (`benchmarks/ddstore_bench.sh`, run under `mpirun -np P`): per epoch, the
//! time each rank spends getting the graphs of its part of every global batch (a) from the
//! distributed in-memory store (one-sided MPI gets of serialised graphs, then decoding) against
//! (b) re-reading them from the ADIOS2 dataset (`read_indices`, coalesced slice reads) and
//! rebuilding their neighbour lists, as a trainer without a store would have to in order to shuffle
//! globally. Both paths must return the same graphs (checked). Prints the slowest rank's seconds.
//!
//! `ddstore_bench DATASET.bp [--epochs E] [--batch B] [--cutoff R]` (cutoff in Angstrom, default 5).

use std::time::Instant;

use hydragnn_train::data::{shard_range, Dataset};
use hydragnn_train::ddstore::DdStore;
use hydragnn_train::graphs::GraphSpec;
use hydragnn_train::trainer::epoch_plan;
use hydragnn_train::Dist;

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut opt = |name: &str, default: f64| -> f64 {
        match args.iter().position(|a| a == name) {
            Some(i) => {
                let v = args[i + 1].parse().expect("a number");
                args.drain(i..i + 2);
                v
            }
            None => default,
        }
    };
    let epochs = opt("--epochs", 3.0) as usize;
    let batch = opt("--batch", 8.0) as usize;
    let cutoff = opt("--cutoff", 5.0);
    let data = args
        .first()
        .expect("usage: ddstore_bench DATASET.bp [--epochs E] [--batch B]");
    let dist = Dist::init();
    let ds = Dataset::open(data).expect("open dataset");
    let tr = ds.split("trainset").expect("trainset");
    let n = tr.n_graphs();
    let gs = GraphSpec::new(cutoff, &ds.meta().elements, false);
    let shard = shard_range(n, dist.rank(), dist.size());
    let t = Instant::now();
    let graphs = gs.load(&tr, shard.clone(), "trainset").expect("load shard");
    let store = DdStore::new(&graphs, shard, n, &dist).expect("ddstore");
    drop(graphs);
    let mut setup = vec![0.0; dist.size()];
    setup[dist.rank()] = t.elapsed().as_secs_f64();
    dist.allreduce_sum(&mut setup);
    let max = |v: f64| {
        let mut s = vec![0.0; dist.size()];
        s[dist.rank()] = v;
        dist.allreduce_sum(&mut s);
        s.into_iter().fold(0.0, f64::max)
    };
    if dist.is_root() {
        println!(
            "dataset {data} | trainset {n} graphs | ranks {} | batch {batch} | store set-up (read shard, graphs, window) {:.3} s",
            dist.size(),
            setup.iter().cloned().fold(0.0, f64::max)
        );
        println!("epoch  ddstore_s  reread_adios2_s  ratio  remote_MB  stored_MB_per_rank");
    }
    let out = std::env::temp_dir();
    for epoch in 0..epochs {
        let (mut a, mut b) = (0.0, 0.0);
        for (_, idx) in epoch_plan(0, epoch, &[n], batch) {
            let part = store.my_part(&idx);
            let t = Instant::now();
            let g1 = store.fetch(&part).expect("fetch");
            a += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let block = tr.read_indices(&part).expect("read");
            let g2 = gs.graphs_of_block(&block, "trainset").expect("graphs");
            b += t.elapsed().as_secs_f64();
            assert_eq!(g1.len(), g2.len());
            for (x, y) in g1.iter().zip(&g2) {
                assert_eq!(
                    (x.index, &x.src, &x.edge_vec),
                    (y.index, &y.src, &y.edge_vec)
                );
            }
        }
        // The store's own counters (remote bytes); its CSV line goes to the temp directory.
        let s = store
            .end_epoch("bench", epoch + 1, &dist, &out, false)
            .expect("stats");
        let (a, b) = (max(a), max(b));
        if dist.is_root() {
            println!(
                "{:5}  {a:9.4}  {b:15.4}  {:5.1}x  {:9.2}  {:18.2}",
                epoch + 1,
                b / a,
                s[0] / 1e6,
                s[4] / dist.size() as f64 / 1e6
            );
        }
    }
    if dist.is_root() {
        let _ = std::fs::remove_file(out.join(hydragnn_train::ddstore::STATS_FILE));
    }
}
