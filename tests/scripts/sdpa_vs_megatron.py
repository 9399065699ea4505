"""SDPAttention against megatron's DotProductAttention: outputs and gradients, causal, masked, decode."""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from megatron_octo import config as cfgmod  # noqa: E402
from megatron_octo.models import llama  # noqa: E402
from megatron_octo.runtime import distributed as rt  # noqa: E402

rt.initialize(1, 1, seed=3)
from megatron.core.transformer.dot_product_attention import DotProductAttention  # noqa: E402
from megatron.core.transformer.enums import AttnMaskType  # noqa: E402

from megatron_octo.models.sdpa_attention import SDPAttention  # noqa: E402

cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny"])
tc = llama.transformer_config(cfg, llama.resolve_architecture(cfg.model))
ref = DotProductAttention(tc, 1, AttnMaskType.causal, "self")
ours = SDPAttention(tc, 1, AttnMaskType.causal, "self")
s, b, heads, groups, hn = 12, 3, 4, 2, 16
torch.manual_seed(0)
worst = {}
for case in ("causal-none", "causal-mask", "doc-mask", "decode"):
    sq = 3 if case == "decode" else s
    q = torch.randn(sq, b, heads, hn, requires_grad=True)
    k = torch.randn(s, b, groups, hn, requires_grad=True)
    v = torch.randn(s, b, groups, hn, requires_grad=True)
    full = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), 1)
    if case == "causal-none":
        mask_ref, mask_ours = full, None
    elif case == "causal-mask":
        mask_ref = mask_ours = full
    elif case == "doc-mask":  # two documents packed in one sequence (reset_attention_mask)
        m = full.clone().expand(b, 1, s, s).clone()
        m[:, :, 6:, :6] = True
        mask_ref = mask_ours = m
    else:
        mask_ref, mask_ours = full[:, :, s - sq:, :], None
    outs = []
    for mod, mask in ((ref, mask_ref), (ours, mask_ours)):
        for t in (q, k, v):
            t.grad = None
        o = mod(q, k, v, mask)
        (o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum().backward()
        outs.append([o.detach().clone()] + [t.grad.clone() for t in (q, k, v)])
    # output and the three input gradients; inf where the shapes differ
    worst[case] = max((a - c).abs().max().item() if a.shape == c.shape else float("inf") for a, c in zip(*outs))
print("RESULT " + json.dumps(worst))  # the test compares (tests/process/test_models_megatron.py)
rt.shutdown()
