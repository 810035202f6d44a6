//! `eie bench`: checks before timing, writes its reports, and fails loudly on bad settings.

mod common;
use common::eie;

#[test]
fn quick_cpu_bench_on_a_paper_layer_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b");
    let o = eie(&[
        "bench",
        "--quick",
        "--cpu-only",
        "--layers",
        "NT-LSTM",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("| NT-LSTM |"), "{md}");
    for k in [
        "cpu-dense/f32",
        "cpu-csr/f32",
        "cpu-eie/f32",
        "cpu-eie/fixed16",
    ] {
        assert!(md.contains(k), "{k} missing from {md}");
    }
    assert!(md.contains("paper: i7 MKL dense"));
    for f in ["bench.md", "bench.csv", "bench.json", "speedup_batch1.svg"] {
        assert!(out.join(f).is_file(), "{f} not written");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    let r = &json["results"][0];
    assert_eq!(r["name"], "NT-LSTM");
    assert_eq!(r["shapes"][0][0], 2400);
    for k in r["kernels"].as_array().unwrap() {
        assert!(k["failure"].is_null(), "{k}");
        let med = k["timings"][0]["us"]["median"].as_f64().unwrap();
        assert!(med > 0.0);
        assert!(k["error"]["max_rel"].as_f64().unwrap() <= 1e-4);
    }
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
}

#[test]
fn bad_settings_are_errors() {
    let o = eie(&["bench", "--cpu-only", "--layers", "Alex-9"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no paper layer `Alex-9`"));
    let o = eie(&["bench", "--cpu-only", "--batch", "0", "--layers", "NT-We"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("batch"));
}
