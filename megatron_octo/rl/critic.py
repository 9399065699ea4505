"""The PPO critic: build the value model, compute values, train it on the clipped value loss.

The value model is the actor's megatron-core ``GPTModel`` (same config: embedding, decoder, final
RMSNorm; any TP) loaded from the same checkpoint as the actor, as verl initialises its critic, with
the vocabulary projection replaced by a scalar value head (verl's megatron critic does the same
swap). The head is one ``[1, hidden]`` weight replicated on every tensor-parallel rank: its input,
the final hidden state, is already complete and identical on each of them, and megatron's
``finalize_model_grads`` averages its gradient over the tensor-parallel group
(``average_gradients_across_tp_domain``), so the copies stay equal and TP=2 gives TP=1's values
and updates. The critic has its own megatron DDP and optimizer (``rl.critic_lr``; the rest from
``optimizer.*``).

Values are per label position, like the log-probs: ``values[:, t]`` is V of the state that
generates ``tokens[:, t + 1]`` (verl's ``values[:, -response_length - 1:-1]``).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from megatron_octo.models import llama
from megatron_octo.rl.logprobs import position_ids
from megatron_octo.rl.losses import value_loss
from megatron_octo.rl.minibatch import train_minibatches
from megatron_octo.schedule import applied_lr
from megatron_octo.checkpoint import save_load as ckpt
from megatron_octo.training.model_setup import build_model_and_optimizer

HEAD_KEYS = ("output_layer.",)  # checkpoint keys of the value head (absent from an actor checkpoint)


class ValueHead(torch.nn.Module):
    """Stands in for GPTModel's output layer: ``[s, b, h] -> ([s, b, 1], None)``."""

    def __init__(self, config, seed: int):
        super().__init__()
        # Same initial head on every rank and at every parallel layout: its own seeded generator.
        init = torch.randn(1, config.hidden_size, generator=torch.Generator().manual_seed(seed))
        self.weight = torch.nn.Parameter((init * config.init_method_std).to(config.params_dtype))
        self.weight.average_gradients_across_tp_domain = True
        self.sequence_parallel = config.sequence_parallel

    def forward(self, hidden_states, weight=None, runtime_gather_output=None):
        if self.sequence_parallel:
            # Hidden states arrive split over the sequence; the split of the gradient is the backward.
            from megatron.core.tensor_parallel.mappings import gather_from_sequence_parallel_region

            hidden_states = gather_from_sequence_parallel_region(hidden_states, tensor_parallel_output_grad=False)
        return F.linear(hidden_states, self.weight), None


def build_value_model(cfg, arch, seed: int):
    """The actor's GPTModel with a value head in place of the vocabulary projection."""

    # Built with tied embeddings so megatron allocates no [vocab, hidden] output weight to throw away.
    model = llama.build_gpt_model(cfg, dataclasses.replace(arch, tie_embeddings=True), pre_process=True,
                                  post_process=True)
    model.output_layer = ValueHead(model.config, seed)
    model.share_embeddings_and_output_weights = False
    word_embeddings = model.embedding.word_embeddings.weight
    if hasattr(word_embeddings, "zero_out_wgrad"):  # set for an output layer sharing it; none does
        del word_embeddings.zero_out_wgrad
    return model


class Critic:
    def __init__(self, cfg, arch):
        r = cfg.rl
        self.cfg = cfg
        # Its LR (rl.critic_lr) is bound by the RL trainer after any checkpoint load (schedule.py).
        built = build_model_and_optimizer(cfg, arch, model=build_value_model(cfg, arch, seed=r.seed))
        self.model, self.optimizer = built.model, built.optimizer

    def checkpoint_parts(self) -> dict:
        """Saved and resumed with the actor, under the key prefix ``critic.``."""
        return {"critic": (self.model, self.optimizer)}

    def init_from(self, ckpt_dir: str, **load_kwargs) -> None:
        """The body's weights from an actor (stable, decay, converted or RL) checkpoint; a new head."""

        ckpt.load(ckpt_dir, self.model, None, with_optimizer=False, layout={"tp": None, "pp": None, "dp": None},
                  skip_model_keys=HEAD_KEYS, **load_kwargs)

    def values(self, tokens: torch.Tensor, micro_batch_size: int) -> torch.Tensor:
        """V at every label position of ``tokens`` (``[n, L]`` -> ``[n, L-1]``), no gradients."""
        module = self.model.module
        module.eval()
        outs = []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], micro_batch_size):
                tok = tokens[start:start + micro_batch_size]
                outs.append(self._forward(module, tok).float())
        module.train()
        return torch.cat(outs)

    @staticmethod
    def _forward(model, tokens: torch.Tensor) -> torch.Tensor:
        return model(tokens[:, :-1], position_ids(tokens), None).squeeze(-1)

    def update(self, batch, minibatch_args: dict) -> dict:
        """The clipped value loss over the actor's mini-batches and epochs; verl's metric names."""

        out = train_minibatches(self.model, self.optimizer, batch, forward_step=self._train_forward,
                                report_keys=("vf_loss", "vf_clipfrac", "vpred_mean"), **minibatch_args)
        return {"critic/vf_loss": out.get("vf_loss"), "critic/vf_clipfrac": out.get("vf_clipfrac"),
                "critic/vpred_mean": out.get("vpred_mean"), "critic/grad_norm": out.get("grad_norm"),
                "critic/lr": applied_lr(self.optimizer)}

    def _train_forward(self, data_iterator, model, scale: float):
        from functools import partial

        mb = next(data_iterator)
        return self._forward(model, mb.tokens), partial(self._loss, mb, scale)

    def _loss(self, mb, scale: float, vpreds: torch.Tensor):
        vpreds = vpreds.float()
        m = mb.mask
        loss, clipfrac = value_loss(vpreds, mb.values, mb.returns, m, clip=self.cfg.rl.vf_clip)
        ntok = m.sum()
        report = {"vf_loss": (loss.detach() * ntok, ntok), "vf_clipfrac": (clipfrac * ntok, ntok),
                  "vpred_mean": ((vpreds.detach() * m).sum(), ntok)}
        # Sum over the micro-batch's tokens; `scale` makes it the token mean of the mini-batch.
        return loss * ntok * scale, report
