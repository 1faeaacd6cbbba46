//! Print the benchmark workload as Data API request bodies, one JSON document per line, for
//! external load generators: `cargo run --release -p dive-policy --example workload_bodies > bodies.jsonl`.

fn main() {
    for i in 0..dive_policy::workload::DISTINCT {
        println!(
            "{}",
            serde_json::json!({ "input": dive_policy::workload::input(i) })
        );
    }
}
