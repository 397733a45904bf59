"""`rag train-reader` on a tiny slice of SQuAD 2.0 with the real bundled model: the loss falls, a checkpoint is
written and the same command resumes from it, SIGINT saves one, the int8 export loads in rag.answer.reader.Reader and
agrees with the float model, and a damaged reader fails in one line (library and `rag eval squad`)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from conftest import rag_env, run_rag
from core.errors import ConfigError
from eval.reader.config import CHECKPOINT, CURVE, MODEL_DIR, ReaderTrainConfig, TrainingInterrupted
from eval.reader.squad import load_squad, split_by_article
from rag.answer.reader import READER_META, Reader, ReaderError

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "squad2-dev-train.json"

pytestmark = [
    pytest.mark.model,
    pytest.mark.slow,
    pytest.mark.skipif(not SQUAD.is_file(), reason="the shared SQuAD 2.0 file is not on this machine"),
]

#: A few dozen windows, batches of 4, 128-word-piece windows: seconds per step on two cores.
TINY = dict(limit=16, batch_size=4, max_length=128, stride=32, agreement_sample=16, checkpoint_every=1000, log_every=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two invocations on one folder: 2 steps (no export), then the same command to step 3, exported."""
    from eval.reader.train import train_reader

    out = tmp_path_factory.mktemp("reader-run")
    logs: list[str] = []
    first = train_reader(SQUAD, out, ReaderTrainConfig(max_steps=2, **TINY), log=logs.append, progress=False, export=False)
    first_checkpoint = (out / CHECKPOINT).is_file()
    second = train_reader(SQUAD, out, ReaderTrainConfig(max_steps=3, **TINY), log=logs.append, progress=False)
    return out, first, first_checkpoint, second, logs


def test_loss_falls_on_a_repeated_batch():
    import torch

    from eval.reader.batches import tensors
    from eval.reader.train import build, prepare, train_step
    from embeddings.model_folder import model_path

    config = ReaderTrainConfig(limit=4, max_length=128, stride=32, learning_rate=1e-4)
    prepared = prepare(SQUAD, None, config, model_path(), log=lambda m: None)
    torch.manual_seed(0)
    model, optimizer, _ = build(model_path(), config, total_steps=100)
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batch = tensors(prepared.features, list(range(4)))
    losses = [train_step(model, optimizer, constant, batch) for _ in range(6)]
    assert losses[-1] < losses[0] * 0.8, losses


def test_a_checkpoint_is_written_and_the_same_command_resumes(tiny_run):
    out, first, first_checkpoint, second, logs = tiny_run
    assert first_checkpoint and first.state.step == 2
    assert any("resuming" in line and "at step 2" in line for line in logs), logs
    assert second.state.step == 3  # the step counter continued rather than restarting
    curve = json.loads((out / CURVE).read_text())
    assert [row["step"] for row in curve["loss"]] == [1, 2, 3]
    assert [row["step"] for row in curve["validation"]] == [2, 3]


def test_a_checkpoint_of_other_settings_is_not_resumed(tiny_run):
    from eval.reader.train import train_reader

    out = tiny_run[0]
    with pytest.raises(ConfigError, match="other settings \\(learning_rate\\)"):
        train_reader(SQUAD, out, ReaderTrainConfig(max_steps=4, **{**TINY, "learning_rate": 1e-4}), log=lambda m: None, progress=False)


def test_the_int8_export_loads_in_the_service_reader_and_agrees(tiny_run):
    out, _, _, report, _ = tiny_run
    folder = out / MODEL_DIR
    assert report.export["agreement"]["same_answer"] >= 0.95
    assert (folder / "model.onnx").stat().st_size < 25 * 2**20
    meta = json.loads((folder / READER_META).read_text())
    assert meta["threshold"] == report.int8_figures["threshold"] and meta["max_length"] == 128
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Know What You Don't Know" in card and "CC BY-SA 4.0" in card and "Apache-2.0" in card
    reader = Reader(folder)
    reader.load()
    reader.load()  # safe twice
    q = split_by_article(load_squad(SQUAD)).validation[0]
    passages = [q.context, "An unrelated sentence about rivers."]
    spans = reader.read(q.question, passages)
    assert len(spans) == 2
    for span in spans:
        assert span is None or passages[span.passage][span.start : span.end] == span.text


def test_training_and_the_service_cut_the_same_windows(tiny_run):
    """Training tokenises through transformers' AutoTokenizer, the service reads the exported tokenizer.json."""
    from tokenizers import Tokenizer

    from embeddings.model_folder import model_path
    from eval.reader.features import load_tokenizers
    from rag.answer.reader import configure, encode_windows, window_tokenizers

    settings = ReaderTrainConfig(**TINY).settings()
    served = window_tokenizers(Tokenizer.from_file(str(tiny_run[0] / MODEL_DIR / "tokenizer.json")))
    configure(served[0], settings)
    trained = load_tokenizers(model_path(), settings)
    for q in split_by_article(load_squad(SQUAD)).validation[:5]:
        ours = encode_windows(*trained, q.question, [q.context], settings)
        theirs = encode_windows(*served, q.question, [q.context], settings)
        assert [w.ids.tolist() for w in ours] == [w.ids.tolist() for w in theirs]
        assert [w.offsets.tolist() for w in ours] == [w.offsets.tolist() for w in theirs]


def test_sigint_saves_a_checkpoint_and_ends_the_run(tmp_path, monkeypatch):
    import eval.reader.train as train

    real_step = train.train_step

    def step_then_interrupt(*args, **kwargs):
        loss = real_step(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # as Ctrl-C would, between two steps
        return loss

    monkeypatch.setattr(train, "train_step", step_then_interrupt)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 1 .* run the same command again"):
        train.train_reader(SQUAD, tmp_path, ReaderTrainConfig(max_steps=5, **TINY), log=lambda m: None, progress=False)
    assert (tmp_path / CHECKPOINT).is_file()
    assert json.loads((tmp_path / CURVE).read_text())["step"] == 1
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def _tiny_squad(path: Path) -> None:
    questions = split_by_article(load_squad(SQUAD)).validation[:3]
    paragraphs = [{"context": q.context, "qas": [{"id": q.id, "question": q.question, "is_impossible": q.is_impossible,
                   "answers": [{"text": a.text, "answer_start": a.start} for a in q.answers]}]} for q in questions]  # fmt: skip
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}))


def test_a_damaged_reader_fails_in_one_line(tiny_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run[0] / MODEL_DIR, broken)
    with (broken / "model.onnx").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    with pytest.raises(ReaderError, match="does not match the fingerprint") as caught:
        Reader(broken).load()
    assert "\n" not in str(caught.value)
    with pytest.raises(ReaderError, match="no reader at"):
        Reader(tmp_path / "nowhere").load()
    _tiny_squad(tmp_path / "tiny.json")
    run = run_rag(["eval", "squad", "--data", str(tmp_path / "tiny.json"), "--predictions", str(tmp_path / "p.json"),
                   "--reader", str(broken)], rag_env(tmp_path))  # fmt: skip
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0 and "fingerprint" in run.stderr, run.stderr


def test_eval_squad_writes_the_official_predictions_and_summary(tiny_run, tmp_path):
    _tiny_squad(tmp_path / "tiny.json")
    run = run_rag(["eval", "squad", "--data", str(tmp_path / "tiny.json"), "--predictions", str(tmp_path / "p.json"),
                   "--reader", str(tiny_run[0] / MODEL_DIR), "--json"], rag_env(tmp_path))  # fmt: skip
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["total"] == 3 and {"exact", "f1", "threshold", "reader"} <= set(figures)
    predictions = json.loads((tmp_path / "p.json").read_text())
    assert set(predictions) == {q.id for q in split_by_article(load_squad(SQUAD)).validation[:3]}
    assert all(isinstance(text, str) for text in predictions.values())
