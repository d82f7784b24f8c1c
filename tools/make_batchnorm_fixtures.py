"""Reference values for sskd_models::batch_norm::BatchNorm from torch.nn.BatchNorm2d / 1d.

For a [4, 3, 5, 6] and a [7, 3] input (train mode, momentum 0.1, eps 1e-5), with gamma/beta
not at their defaults and a loss sum(y * w) for a fixed w, writes: the output, the input
gradient, the gamma and beta gradients, the running mean and (unbiased) running variance after
the step, and the eval-mode output with those running statistics.

    python tools/make_batchnorm_fixtures.py   # -> tests/fixtures/layers/batchnorm.safetensors
"""
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}
for name, shape, layer in [
    ("bn2d", (4, 3, 5, 6), torch.nn.BatchNorm2d(3)),
    ("bn1d", (7, 3), torch.nn.BatchNorm1d(3)),
]:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.5, -2.0]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        layer.running_mean.copy_(torch.tensor([0.2, -0.1, 0.0]))
        layer.running_var.copy_(torch.tensor([1.5, 0.7, 1.0]))
    x = (torch.randn(shape) * 2.0 + 0.5).requires_grad_(True)
    w = torch.randn(shape)
    out[f"{name}.input"] = x.detach().clone()
    out[f"{name}.weight_of_loss"] = w
    out[f"{name}.gamma"] = layer.weight.detach().clone()
    out[f"{name}.beta"] = layer.bias.detach().clone()
    out[f"{name}.running_mean_before"] = layer.running_mean.clone()
    out[f"{name}.running_var_before"] = layer.running_var.clone()
    layer.train()
    y = layer(x)
    (y * w).sum().backward()
    out[f"{name}.train_output"] = y.detach()
    out[f"{name}.input_grad"] = x.grad.detach()
    out[f"{name}.gamma_grad"] = layer.weight.grad.detach()
    out[f"{name}.beta_grad"] = layer.bias.grad.detach()
    out[f"{name}.running_mean"] = layer.running_mean.clone()
    out[f"{name}.running_var"] = layer.running_var.clone()
    layer.eval()
    with torch.no_grad():
        out[f"{name}.eval_output"] = layer(x.detach())

target = Path(__file__).resolve().parent.parent / "tests/fixtures/layers/batchnorm.safetensors"
save_file({k: v.contiguous() for k, v in out.items()}, str(target), metadata={"case": "{\"layer\": \"batchnorm\"}"})
print(f"wrote {target}")
