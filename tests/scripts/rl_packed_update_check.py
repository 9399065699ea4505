"""rl.micro_batch_tokens (token-budget micro-batches) against the padded update, through the RL trainer's
own update (RLTrainer._update: its loss, megatron's forward-backward schedule, the optimizer).

One mini-batch of 8 rows (prompts and responses of different lengths, one row with no loss token as
dynamic sampling's fillers have, per-row advantages of both signs, old log-probs perturbed so that
PPO's clip and the dual clip act) is trained once with the padded micro-batches (``micro_batch_size``
rows at the batch's full width) and once with ``rl.micro_batch_tokens``, from the same weights and
optimizer state. Compared with the first run: every parameter's gradient as the optimizer step sees it
(the sum over the mini-batch's micro-batches), as ``|g - g_ref| / |g_ref|`` (Frobenius norms, per
parameter tensor) and as ``max|g - g_ref| / max|g_ref|``; every weight after the step, as the largest
difference beyond one float32 spacing of the weight over the tensor's largest step; the update's metrics.

    python tests/scripts/rl_packed_update_check.py OUT.json LOSS_AGG_MODE [LOSS_AGG_MODE ...]

Three runs per mode: ``padded1`` (one micro-batch of all 8 rows: the gradient after one micro-batch is
the mini-batch's), ``padded4`` (4 micro-batches of 2 rows: the same padded rows, only the order of the
gradient sums differs) and ``packed`` (token budget 100: micro-batches of 2, 3 and 2 rows, 49, 26 and 15
tokens wide; the row without loss tokens left out). The optimizer is SGD, lr 10 (megatron's momentum 0.9:
the first step is -lr * clip * (g + weight_decay * w)), linear in the gradient and far above the weights'
float32 spacing; Adam's first step lr * g / (|g| + eps) turns the rounding of a gradient element near
eps = 1e-8 into a change of up to lr (padded4, a pure reordering, moves such steps by 6e-3 of the
largest) and would say nothing more about the packing than the gradients do.
"""

from __future__ import annotations

import copy
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


class Recorder:
    """The optimizer, recording each parameter's gradient when the step is taken."""

    def __init__(self, optimizer, module):
        self.optimizer, self.module, self.grads = optimizer, module, None

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self):
        self.grads = {n: p.main_grad.detach().clone() for n, p in self.module.named_parameters()}
        return self.optimizer.step()


def main(out_path: str, *modes: str) -> None:
    from megatron_octo import config as cfgmod, schedule
    from megatron_octo.models import llama
    from megatron_octo.rl.trainer import RLTrainer, build_batch
    from megatron_octo.runtime import distributed as rt
    from megatron_octo.training.model_setup import build_model_and_optimizer

    base = ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
            "tokenizer.path=data/tokenizer/octo_sp8k.model", "rl.prompts_per_step=2", "rl.samples_per_prompt=4",
            "rl.mini_batch_prompts=2", "rl.clip_high=0.28", "rl.loss_scale_factor=32", "optimizer.name=sgd",
            "optimizer.weight_decay=0.1"]
    runs = {"padded1": ["rl.micro_batch_size=8"], "padded4": ["rl.micro_batch_size=2"],
            "packed": ["rl.micro_batch_size=2", "rl.micro_batch_tokens=100"]}
    cfg = cfgmod.load(None, base + runs["padded1"])
    rt.initialize(1, 1, seed=7)
    tok = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)

    g = torch.Generator().manual_seed(3)
    prompt_lens, response_lens = [5, 9, 3, 7, 4, 6, 8, 5], [30, 4, 17, 0, 22, 9, 41, 12]
    prompts = [torch.randint(10, 8000, (n,), generator=g).tolist() for n in prompt_lens]
    responses = [torch.randint(10, 8000, (n,), generator=g).tolist() for n in response_lens]
    adv = torch.tensor([1.3, -0.7, -1.1, 0.5, 0.9, -1.6, 0.4, -0.2])
    batch = build_batch(prompts, responses, adv)

    results = {}
    for mode in modes:
        g = torch.Generator().manual_seed(5)  # the same old log-probs for every mode
        first = None
        grads, after, metrics_of = {}, {}, {}
        for name, extra in runs.items():
            cfg = cfgmod.load(None, base + extra + [f"rl.loss_agg_mode={mode}"])
            built = build_model_and_optimizer(cfg, arch)
            model, optimizer = built.model, built.optimizer
            if first is None:
                first = copy.deepcopy(model.module.state_dict())
            else:
                model.module.load_state_dict(first)
            schedule.constant(optimizer, 10.0, cfg.optimizer.weight_decay)  # see the docstring
            trainer = RLTrainer(cfg)
            trainer.model, trainer.ref, trainer.dp, trainer.is_last_stage = model, None, 1, True
            trainer.loss_scale_factor = float(cfg.rl.loss_scale_factor)
            b = copy.deepcopy(batch)
            if name == "padded1":
                model.eval()
                lp, _ = trainer._forward_log_probs(model.module, b)
                model.train()
                # Old log-probs: the policy's, moved by +-0.3 and, on every 5th token, 2.5 lower (ratio e^2.5 > 3).
                noise = 0.3 * torch.randn(lp.shape, generator=g)
                noise[:, ::5] -= 2.5
                batch.old_log_probs = lp + noise
                b.old_log_probs = batch.old_log_probs.clone()
            trainer.optimizer = Recorder(optimizer, model.module)
            metrics_of[name] = {k: float(v) for k, v in trainer._update(b).items()}
            grads[name] = trainer.optimizer.grads
            after[name] = {n: p.detach().clone() for n, p in model.module.named_parameters()}

        def compare_grads(name: str) -> dict:
            ref, got = grads["padded1"], grads[name]
            norm = {n: float((got[n] - ref[n]).norm() / ref[n].norm()) for n in ref}
            elem = {n: float((got[n] - ref[n]).abs().max() / ref[n].abs().max()) for n in ref}
            return dict(norm=norm, elem=elem)

        def compare_weights(name: str) -> dict:
            """Per tensor: the largest |w - w_ref| beyond one float32 spacing of the weight (2^-23 |w|:
            each side is w0 + step rounded once to float32), over the largest |step| of the reference."""
            out = {}
            for n, ref in after["padded1"].items():
                got = after[name][n]
                spacing = 2.0 ** -23 * torch.maximum(got.abs(), ref.abs())
                beyond = ((got - ref).abs() - spacing).clamp(min=0).max()
                out[n] = float(beyond / (ref - first[n]).abs().max())
            return out

        results[mode] = {name: dict(metrics=metrics_of[name], grad=compare_grads(name),
                                    weights=compare_weights(name)) for name in runs}
        results[mode]["params"] = len(grads["padded1"])
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
