"""experiments/bench.py runs end to end on a tiny setting and ends with its machine-readable line."""
import re

from experiments import bench

FINAL_LINE = re.compile(r"cpu=\S+ precision=\S+ train_baseline_img_s=[\d.]+ train_img_s=[\d.]+ train_speedup=[\d.]+ "
                        r"eval_baseline_img_s=\d+ eval_img_s=\d+ eval_speedup=[\d.]+ peak_rss_gb=[\d.]+")


def test_bench_prints_choice_table_and_final_line(capsys):
    bench.main(["--batch-size", "4", "--steps", "1", "--repeats", "1", "--eval-images", "8", "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("Speed (training): ") for line in lines)
    assert any(line.startswith("Speed (evaluation): ") for line in lines)
    assert any(line.startswith("| the course's (fp32 NCHW eager") for line in lines)
    assert FINAL_LINE.fullmatch(lines[-1]), lines[-1]
    assert not any(line.startswith("Epoch [") or line.startswith("  ..") for line in lines)  # the loops stay quiet


def test_accuracy_check_trains_fp32_and_chosen_path(tiny_data, capsys):
    bench.main(["--accuracy-check", str(tiny_data), "--check-classes", "cat,dog", "--check-images", "8",
                "--check-epochs", "1", "--check-seeds", "1", "--batch-size", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "seed 0, fp32 path:" in out and "seed 0, chosen path:" in out
    assert re.search(r"^check_fp32_acc=[\d.]+\+-[\d.]+ check_chosen_acc=[\d.]+\+-[\d.]+$", out, re.M)


def test_candidates_time_every_configuration_and_mark_the_choice(capsys, monkeypatch):
    monkeypatch.setattr(bench.speed, "native_bf16", lambda device: False)  # fp32 only: the same rows on every CPU
    bench.main(["--candidates", "--batch-size", "4", "--steps", "1", "--repeats", "1", "--eval-images", "8",
                "--device", "cpu"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| fp32")]
    assert [row[0] for row in rows] == ["| fp32, NCHW", "| fp32, channels_last",
                                        "| fp32, channels_last, 1x1 convs as matmuls"]
    for column, training in ((1, True), (2, False)):  # one pick marked in each column: speed.choose's
        picked = bench.speed.choose("resnet50", training, bench.torch.device("cpu")).config.describe()
        assert [row[0][2:] for row in rows if row[column].rstrip(" |").endswith("<-")] == [picked]
