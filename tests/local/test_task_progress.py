import io

from fashionrec.console import console
from fashionrec.local.pipeline_runner import TaskProgress
from fashionrec.training.train import EpochRecord, progress_line


def test_the_console_shows_task_ends_and_each_epoch_while_the_log_keeps_everything() -> None:
    epoch = progress_line(EpochRecord(2, 0.41, 30.0, 180.0, 0.7), epochs=20, first_epoch=0, best_so_far=True)
    kfp_output = [
        "11:52:01.120 - INFO - Executing task 'train-encoder'",
        "\x1b[1mtraining resnet18 on 2400 items (6 classes, bf16)\x1b[0m",
        "warm start from model 750b49e8dfa8 (/work/models/production)",
        epoch,
        "a line nobody needs on the console",
        "11:53:40.500 - INFO - Task 'train-encoder' finished with status SUCCESS",
    ]
    log = io.StringIO()
    progress = TaskProgress(log)
    with console.capture() as captured:
        text = "\n".join(kfp_output) + "\n"
        for start in range(0, len(text), 7):  # arbitrary chunks: lines are split where they end, not where writes do
            progress.write(text[start : start + 7])
    shown = captured.get().splitlines()
    assert log.getvalue() == text
    assert [line.strip() for line in shown[1:4]] == [
        "training resnet18 on 2400 items (6 classes, bf16)",
        "warm start from model 750b49e8dfa8 (/work/models/production)",
        epoch,
    ]
    assert shown[0].strip() == "train-encoder ..." and shown[4].strip().startswith("train-encoder success in")
    assert len(shown) == 5
