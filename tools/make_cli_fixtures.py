"""A CIFAR-100 teacher in the SSKD codebase's checkpoint format for the `cifar100` example's
tests: `teacher.pth` as SSKD's stage 2 saves it from DataParallel, a bare state dict with
`module.backbone.*` (a resnet8, 100 classes, the weights of `resnet8_repdistiller.pth`) and
`module.proj_head.*` (Linear(64, 64) - ReLU - Linear(64, 64), seeded).

    python tools/make_cli_fixtures.py   # -> tests/fixtures/models/resnet8_sskd_teacher.pth
"""
import os

import torch

import zoo_reference as zoo

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")

torch.manual_seed(0)
backbone = torch.load(os.path.join(OUT, "resnet8_repdistiller.pth"), weights_only=True)["model"]
head = zoo.SS_HEAD(64)
state = {f"module.backbone.{k}": v for k, v in backbone.items()}
state.update({f"module.proj_head.{k}": v for k, v in head.state_dict().items()})
torch.save(state, os.path.join(OUT, "resnet8_sskd_teacher.pth"))
print(f"wrote {len(state)} tensors")
