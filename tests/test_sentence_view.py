"""ConVIRT's text transform: one random sentence per report, with its special tokens, at the front."""

from __future__ import annotations

import torch

from cxrl.transforms import sentence_view

# [CLS] a a . b b b . [SEP] pad  /  [CLS] c . [SEP] pad ...  /  no report
IDS = torch.tensor([[1, 10, 11, 5, 20, 21, 22, 5, 2, 0], [1, 30, 5, 2, 0, 0, 0, 0, 0, 0], [0] * 10])
SENTENCES = torch.tensor([[0, 1, 1, 1, 2, 2, 2, 2, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 0, 0], [0] * 10])
MASK = torch.tensor([[1] * 9 + [0], [1] * 4 + [0] * 6, [0] * 10]).bool()


def test_probability_zero_leaves_every_report_whole():
    ids, mask = sentence_view(IDS, MASK, SENTENCES, 0.0)
    assert ids is IDS and torch.equal(mask, MASK)


def test_each_report_keeps_one_whole_sentence_between_its_special_tokens():
    torch.manual_seed(0)
    seen = set()
    for _ in range(50):
        ids, mask = sentence_view(IDS, MASK, SENTENCES, 1.0)
        first = ids[0][mask[0]].tolist()
        assert first in ([1, 10, 11, 5, 2], [1, 20, 21, 22, 5, 2])  # a sentence, moved to the front
        assert mask[0, : len(first)].all() and not mask[0, len(first):].any()
        seen.add(len(first))
        assert ids[1][mask[1]].tolist() == [1, 30, 5, 2]  # one sentence: the whole report
        assert not mask[2].any()  # no report: nothing to cut
    assert seen == {5, 6}  # both sentences are drawn


def test_the_probability_is_the_share_of_reports_cut():
    torch.manual_seed(1)
    ids = IDS[:1].repeat(4000, 1)
    _, mask = sentence_view(ids, MASK[:1].repeat(4000, 1), SENTENCES[:1].repeat(4000, 1), 0.3)
    cut = (mask.sum(1) < 9).float().mean().item()
    assert abs(cut - 0.3) < 0.03
