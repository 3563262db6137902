"""bench.py runs end to end on a tiny setting and ends with its machine-readable line."""
import re

import bench


def test_bench_prints_table_and_final_line(capsys):
    bench.main(["--batch-size", "4", "--steps", "1", "--repeats", "1", "--eval-images", "8", "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "| training, default path |" in "\n".join(lines)
    assert re.fullmatch(r"train_baseline_img_s=[\d.]+ train_img_s=[\d.]+ train_speedup=[\d.]+ eval_img_s=\d+ peak_rss_gb=[\d.]+", lines[-1])
    assert not any(line.startswith("Epoch [") for line in lines)  # the loops' lines stay out of the report
