"""Reference for whole training steps: a network in train mode, cross-entropy, backward and
torch.optim.SGD(lr 0.05, momentum 0.9, weight decay 5e-4), three steps, in float64.

For resnet8 (10 classes; its stride-2 projection shortcuts) and wrn_16_1 (10 classes), from
the deterministic weights of make_model_fixtures.py, on the deterministic input of shape
[8, 3, 32, 32] with labels 0..7, writes the loss of every step and the eval-mode logits after
the last step (these depend on every parameter and every running statistic).

    python tools/make_train_step_fixtures.py  # -> tests/fixtures/training/<arch>_sgd.safetensors
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(__file__))
import zoo_reference as zoo  # noqa: E402
from make_model_fixtures import deterministic, deterministic_state  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "training")
STEPS = 3


def write(arch):
    model = zoo.build(arch, 10)
    model.load_state_dict(deterministic_state(model))
    model = model.double().train()
    x = torch.from_numpy(deterministic("input", (8, 3, 32, 32))).double()
    y = torch.arange(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    losses = []
    for _ in range(STEPS):
        logits = model(x)[0]
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        logits = model(x)[0]
    meta = {
        "arch": arch,
        "num_classes": 10,
        "input_shape": [8, 3, 32, 32],
        "keys": [[k, list(v.shape)] for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")],
    }
    save_file(
        {"losses": np.array(losses, dtype=np.float32), "eval_logits": logits.float().numpy()},
        os.path.join(OUT, f"{arch}_sgd.safetensors"),
        metadata={"case": json.dumps(meta)},
    )
    print(arch, losses)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for arch in ["resnet8", "wrn_16_1"]:
        write(arch)
