"""quantune.integrations.transformers: a real Trainer on a tiny random Llama reports each
evaluation and stops when pruned, over ask/tell and under the trial protocol (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from daemon import Daemon

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401

    HAVE = True
except ImportError:
    HAVE = False

REQUIRED = os.environ.get("QUANTUNE_REQUIRE_TORCHAO") == "1"

TRAINER = """
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

class Tokens(torch.utils.data.Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 64, (n, 16), generator=g)
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}

def trainer(out_dir, callback, max_steps=40):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    args = TrainingArguments(output_dir=out_dir, max_steps=max_steps, eval_strategy="steps",
                             eval_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
                             report_to=[], save_strategy="no", use_cpu=True, logging_steps=100,
                             disable_tqdm=True)
    return Trainer(model=LlamaForCausalLM(cfg), args=args, train_dataset=Tokens(64),
                   eval_dataset=Tokens(8), callbacks=[callback])
"""


def _read(f) -> str:
    f.flush()
    f.seek(0)
    return f.read()


def setUpModule() -> None:
    if not HAVE:
        if REQUIRED:
            raise RuntimeError("QUANTUNE_REQUIRE_TORCHAO=1 but torch/transformers are not importable")
        raise unittest.SkipTest("torch and transformers are not installed")


class CallbackTest(unittest.TestCase):
    def test_ask_tell_trial_stops_when_pruned(self) -> None:
        import quantune
        from quantune.integrations.transformers import QuantuneCallback

        ns: dict = {}
        exec(TRAINER, ns)
        d = Daemon().start()
        try:
            c = quantune.Client(socket=d.socket)
            s = quantune.Study.create(
                "hf-prune",
                space={"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
                objectives={"eval_loss": "minimize"},
                # eval_loss of a random model is ~ln(64) = 4.2: the third report breaks the
                # gate only once training had a chance; the gate prunes at the first report
                # that is over the bound by more than the grace.
                constraints={"eval_loss": {"max": 1.0}},
                pruner={"constraint_grace": 0.5},
                max_trials=1,
                client=c,
            )
            t = s.ask()
            cb = QuantuneCallback(t)
            with tempfile.TemporaryDirectory() as out:
                tr = ns["trainer"](out, cb)
                tr.train()
            self.assertTrue(cb.pruned)
            self.assertEqual(cb.reports, 1)
            self.assertEqual(tr.state.global_step, 2)  # stopped at the first evaluation of 20
            view = s.trial(t.number)
            self.assertEqual(view["trial"]["state"], "pruned")
            self.assertEqual([r["step"] for r in view["reports"]], [2])
            self.assertIn("eval_loss", view["reports"][0]["values"])
            self.assertNotIn("eval_runtime", view["reports"][0]["values"])
        finally:
            d.stop()

    def test_protocol_trial_reports_and_stops_on_sigterm(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            metrics = os.path.join(d, "m.jsonl")
            script = TRAINER + textwrap.dedent(
                """
                import json, sys
                from quantune.integrations.transformers import QuantuneCallback
                cb = QuantuneCallback()
                tr = trainer(sys.argv[1], cb, max_steps=2000)
                tr.train()
                print(json.dumps({"pruned": cb.pruned, "step": tr.state.global_step}))
                """
            )
            # Output to files: a pipe nobody reads while we wait would fill and block the child.
            out_f = open(os.path.join(d, "out"), "w+")
            err_f = open(os.path.join(d, "err"), "w+")
            p = subprocess.Popen(
                [sys.executable, "-c", script, d],
                env={**os.environ, "QUANTUNE_METRICS_FILE": metrics, "QUANTUNE_PARAMS": "{}"},
                stdout=out_f,
                stderr=err_f,
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and p.poll() is None:
                if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
                    break
                time.sleep(0.1)
            if p.poll() is not None:
                self.fail(f"the trainer exited early:\n{_read(err_f)}")
            p.send_signal(signal.SIGTERM)  # what the daemon does to a pruned trial
            p.wait(timeout=60)
            out, err = _read(out_f), _read(err_f)
            out_f.close()
            err_f.close()
            self.assertEqual(p.returncode, 0, err)
            result = json.loads(out.strip().splitlines()[-1])
            self.assertTrue(result["pruned"])
            self.assertLess(result["step"], 2000)
            with open(metrics) as f:
                first = json.loads(f.readline())
            self.assertEqual(first["step"], 2)
            self.assertIn("eval_loss", first)


if __name__ == "__main__":
    unittest.main()
