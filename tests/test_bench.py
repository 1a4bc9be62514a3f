"""`glmv bench` end to end on a cut-down workload: the report adds up (no timing assertions)."""
import json
import subprocess
import sys


def test_bench_writes_a_consistent_report(tmp_path):
    out = subprocess.run([sys.executable, "-m", "glmv.cli", "bench", "--layers", "2", "--requests", "3",
                          "--image-size", "112", "--prompt-tokens", "8", "--output-len", "5",
                          "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    runs = report["runs"]
    assert set(runs) == {"glmv", "glmv_single", "hf_single", "hf_sequential", "hf_batched"}
    for name in ("glmv", "hf_sequential", "hf_batched"):
        assert runs[name]["output_tokens"] == 3 * 5, name
    assert runs["glmv_single"]["output_tokens"] == runs["hf_single"]["output_tokens"] == 5
    assert report["workload"]["prompt_tokens"] > 16  # 16 image tokens + text + template
    assert report["ratios"]["glmv_vs_hf_batched_tok_s"] > 0
    assert "| glmv engine (3 concurrent) |" in (tmp_path / "out" / "bench.md").read_text()
