"""The parameter report: how much of a model trains, per module group."""
from dataclasses import dataclass
from typing import List

import torch.nn as nn

from mmadapter.insertion import adapter_parameter_names


@dataclass
class ParameterReport:
    backbone_total: int
    backbone_trainable: int
    backbone_adapter: int
    groups: List[tuple]  # (name, total, trainable) of the other children

    @property
    def backbone_trainable_percent(self) -> float:
        return 100.0 * self.backbone_trainable / max(self.backbone_total, 1)

    @property
    def model_trainable(self) -> int:
        return self.backbone_trainable + sum(t for _, _, t in self.groups)

    def table(self) -> str:
        rows = [('backbone (total)', f'{self.backbone_total:,}', ''),
                ('backbone (trainable)', f'{self.backbone_trainable:,}',
                 f'{self.backbone_trainable_percent:.2f}%'),
                ('backbone (adapters)', f'{self.backbone_adapter:,}',
                 f'{100.0 * self.backbone_adapter / max(self.backbone_total, 1):.2f}%')]  # noqa: E501
        for name, total, trainable in self.groups:
            rows.append((f'{name} (trainable / total)',
                         f'{trainable:,} / {total:,}', ''))
        rows.append(('model (trainable)', f'{self.model_trainable:,}', ''))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f'{"group":<{widths[0]}}  {"parameters":>{widths[1]}}  '
                 f'{"share":>{widths[2]}}']
        lines += [f'{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}'
                  for a, b, c in rows]
        return '\n'.join(lines)


def _count(params, trainable_only=False) -> int:
    return sum(p.numel() for p in params
               if p.requires_grad or not trainable_only)


def parameter_report(model: nn.Module) -> ParameterReport:
    """Report for a detector/segmentor/classifier with a ``backbone``, or
    for a bare backbone."""
    backbone = getattr(model, 'backbone', model)
    adapter = set(adapter_parameter_names(backbone))
    groups = []
    if backbone is not model:
        for name, child in model.named_children():
            if child is not backbone and any(True for _ in child.parameters()):
                groups.append((name, _count(child.parameters()),
                               _count(child.parameters(), True)))
    return ParameterReport(
        backbone_total=_count(backbone.parameters()),
        backbone_trainable=_count(backbone.parameters(), True),
        backbone_adapter=sum(p.numel() for n, p in backbone.named_parameters()
                             if n in adapter),
        groups=groups)
