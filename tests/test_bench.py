"""bench.py runs end to end on a tiny setting and ends with its machine-readable line."""
import re

import bench


def test_bench_prints_table_and_final_line(capsys):
    bench.main(["--batch-size", "4", "--steps", "1", "--repeats", "1", "--eval-images", "8", "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "| training, default path |" in "\n".join(lines)
    assert re.fullmatch(r"train_baseline_img_s=[\d.]+ train_img_s=[\d.]+ train_speedup=[\d.]+ eval_img_s=\d+ peak_rss_gb=[\d.]+", lines[-1])
    assert not any(line.startswith("Epoch [") for line in lines)  # the loops' lines stay out of the report


def test_accuracy_check_trains_both_ways(tiny_data, capsys):
    bench.main(["--accuracy-check", str(tiny_data), "--check-classes", "cat,dog", "--check-images", "8",
                "--check-epochs", "1", "--check-seeds", "1", "--batch-size", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "seed 0, baseline path:" in out and "seed 0, default path:" in out
    assert re.search(r"^check_baseline_acc=[\d.]+\+-[\d.]+ check_default_acc=[\d.]+\+-[\d.]+$", out, re.M)
