"""The built-in metrics, accumulated exactly over a split: counts (a confusion matrix, top-k hits) and
float64 sums kept on the device until the evaluation's end, never a mean of per-batch values. The
definitions are scikit-learn's, so that `f1_score(..., average="macro")` on the same predictions gives
the same number."""

from __future__ import annotations

import math

import torch

from optcli.components.forward import classes_last
from optcli.metrics.table import Metric


def class_scores(
    output: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Every position's outputs as rows [N, C], its class label [N], and whether it is judged [N]
    (an ignore_index such as -100 is not a class): logits [B, C] or, for sequences, [B, T, C]
    (a language model's) or [B, C, T] (torch's class dimension 1); one logit per sample (binary) becomes two columns [-x, x], whose
    softmax is the sigmoid. None for outputs that are not class scores. (No host copy: a mask, not
    a selection, keeps an accelerator from waiting.)"""
    if classes_last(output, targets):
        rows = output.reshape(-1, output.shape[-1])  # a sequence's logits, classes last [B, T, V]
        labels = targets.reshape(-1).long()
    elif output.dim() == targets.dim() + 1 and output.shape[1] > 1:
        classes = output.shape[1]
        rows = output.movedim(1, -1).reshape(-1, classes)
        labels = targets.reshape(-1).long()
    elif output.shape == targets.shape:
        logit = output.reshape(-1)
        rows = torch.stack([-logit, logit], dim=1)
        labels = (targets.reshape(-1) > 0.5).long()
    else:
        return None
    return rows, labels, (labels >= 0) & (labels < rows.shape[1])


class ClassTotals:
    """For class labels: the confusion matrix (true class by row, predicted by column), the top-k
    hits for each k asked for, and, for AUROC, every position's class probabilities, all kept on the
    device until the evaluation's end."""

    def __init__(self, metrics: tuple[Metric, ...]) -> None:
        self.top_ks = sorted({dict(m.arguments)["k"] for m in metrics if m.builtin == "top_k_accuracy"})
        self.keeps_scores = any(m.builtin == "auroc" for m in metrics)
        # A confusion matrix only for the metrics that need one: a language model's vocabulary of
        # 50,000 tokens would make it 2.5e9 counts. Accuracy needs only the hits.
        self.keeps_confusion = any(m.builtin in _FROM_CONFUSION for m in metrics)
        self.confusion: torch.Tensor | None = None
        self.hits: torch.Tensor | None = None  # right predictions, and judged positions
        self.judged: torch.Tensor | None = None
        self.top_hits: dict[int, torch.Tensor] = {}
        self.scores: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._host: torch.Tensor | None = None  # the confusion matrix, copied once at the end

    def add(self, rows: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor) -> None:
        classes = rows.shape[1]
        predicted = rows.argmax(dim=1)
        hits, judged = ((predicted == labels) & kept).sum(), kept.sum()
        self.hits = hits if self.hits is None else self.hits + hits
        self.judged = judged if self.judged is None else self.judged + judged
        if self.keeps_confusion:
            cells = classes * classes
            # Unjudged positions are counted in one extra cell, then dropped.
            index = torch.where(kept, labels * classes + predicted, cells)
            counts = torch.bincount(index, minlength=cells + 1)[:cells].reshape(classes, classes)
            self.confusion = counts if self.confusion is None else self.confusion + counts
        for k in self.top_ks:
            top = rows.topk(min(k, classes), dim=1).indices
            hits = ((top == labels.unsqueeze(1)).any(dim=1) & kept).sum()
            self.top_hits[k] = self.top_hits[k] + hits if k in self.top_hits else hits
        if self.keeps_scores:
            self.scores.append((torch.softmax(rows.double(), dim=1), labels, kept))

    def values(self, metric: Metric) -> float:
        """One built-in's value (a host copy)."""
        assert self.judged is not None and self.hits is not None
        total = self.judged.item()
        if not total:
            return math.nan  # (nothing judged: every target an ignore_index)
        name, arguments = metric.builtin, dict(metric.arguments)
        if name in ("accuracy", "token_accuracy"):
            return self.hits.item() / total
        if name == "top_k_accuracy":
            return self.top_hits[arguments["k"]].item() / total
        if name in ("precision", "recall", "f1"):
            assert self.confusion is not None
            if self._host is None:
                self._host = self.confusion.double().cpu()
            return _averaged(self._host, name, arguments["average"])
        if name == "auroc":
            scores, labels, kept = (torch.cat(parts).cpu() for parts in zip(*self.scores, strict=True))
            return _auroc(scores[kept], labels[kept])
        raise AssertionError(name)


_FROM_CONFUSION = ("precision", "recall", "f1", "confusion_matrix")


def _averaged(confusion: torch.Tensor, name: str, average: str) -> float:
    """scikit-learn's precision, recall or F1 over the labels that occur (as true or predicted);
    an undefined ratio (0/0) counts as 0, as its zero_division default does."""
    true_positives = confusion.diagonal()
    predicted, actual = confusion.sum(dim=0), confusion.sum(dim=1)
    present = (predicted + actual) > 0
    true_positives, predicted, actual = true_positives[present], predicted[present], actual[present]
    if average == "micro":
        true_positives, predicted, actual = (
            t.sum(dim=0, keepdim=True) for t in (true_positives, predicted, actual)
        )
    denominator = {"precision": predicted, "recall": actual, "f1": predicted + actual}[name]
    numerator = true_positives * (2 if name == "f1" else 1)
    per_class = torch.where(
        denominator > 0, numerator / denominator.clamp(min=1), torch.zeros_like(numerator)
    )
    if average == "weighted":
        return (per_class * actual).sum().item() / actual.sum().item() if actual.sum() > 0 else 0.0
    return per_class.mean().item()


def _auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The area under the ROC curve: for two classes, of the second class's score; for more, each
    class against the rest, averaged over the classes that have both positives and negatives (as
    scikit-learn's roc_auc_score(multi_class="ovr", average="macro") with every class present).

    In the Mann-Whitney form, for every class at once: the chance a positive outscores a negative,
    ties counting half (equal to the trapezoidal area under the ROC curve)."""
    columns = scores[:, 1:] if scores.shape[1] == 2 else scores
    first = 1 if scores.shape[1] == 2 else 0
    by_class = columns.T.contiguous()  # [classes, samples]
    ordered = by_class.sort(dim=1).values
    # A score's mean rank among its ties (1-based): between the first and the last place it could take.
    lowest = torch.searchsorted(ordered, by_class, right=False)
    highest = torch.searchsorted(ordered, by_class, right=True)
    ranks = (lowest + highest + 1).double() / 2
    classes = torch.arange(first, first + by_class.shape[0]).unsqueeze(1)
    positive = labels.unsqueeze(0) == classes
    positives = positive.sum(dim=1).double()
    negatives = labels.numel() - positives
    rank_sums = (ranks * positive).sum(dim=1)
    areas = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    defined = areas[(positives > 0) & (negatives > 0)]
    return defined.mean().item() if defined.numel() else math.nan


class RegressionTotals:
    """For real-valued targets: squared and absolute errors, and the targets' sums for their
    variance (r2 per target value, averaged as scikit-learn's default does)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.squared: torch.Tensor | float = 0.0
        self.absolute: torch.Tensor | float = 0.0
        self.target_sum: torch.Tensor | float = 0.0
        self.target_square_sum: torch.Tensor | float = 0.0
        self.samples = self.values_seen = 0

    def add(self, output: torch.Tensor, targets: torch.Tensor, size: int) -> None:
        error = (output - targets).to(self.dtype).reshape(size, -1)
        self.squared = self.squared + error.square().sum(dim=0)  # per target value, for r2
        self.absolute = self.absolute + error.abs().sum()
        flat = targets.to(self.dtype).reshape(size, -1)
        self.target_sum = self.target_sum + flat.sum(dim=0)
        self.target_square_sum = self.target_square_sum + flat.square().sum(dim=0)
        self.samples += size
        self.values_seen += targets.numel()

    def values(self) -> dict[str, float]:
        squared = torch.as_tensor(self.squared)
        spread = (
            torch.as_tensor(self.target_square_sum) - torch.as_tensor(self.target_sum).square() / self.samples
        )
        explained = [
            1 - sse / sst for sse, sst in zip(squared.tolist(), spread.tolist(), strict=True) if sst > 0
        ]
        return {
            "rmse": math.sqrt(squared.sum().item() / self.values_seen),
            "mae": float(torch.as_tensor(self.absolute).item()) / self.values_seen,
            "r2": math.fsum(explained) / len(explained) if explained else math.nan,
        }


def confusion_rows(totals: ClassTotals) -> list[list[int]]:
    """The confusion matrix as a file holds it: a row per true class, a column per predicted one."""
    assert totals.confusion is not None
    return [[int(count) for count in row] for row in totals.confusion.cpu().tolist()]
