"""memlib.biology: the perceptron rule and its mistake bound, Rosenblatt's perceptron (one R-unit, and several with
source-sets and feedback), the multi-store model.

Shapes: ``B`` stimuli, ``S`` sensory units, ``A`` association units, ``R`` responses, ``F`` features, ``N`` trials,
``L`` list length, ``K`` short-term slots.
"""

from __future__ import annotations

import math

import pytest
import torch

import memlib
from memlib.biology import (
    MultiStoreConfig,
    MultiStoreModel,
    Perceptron,
    SensoryRegister,
    SourceSetPerceptron,
    mistake_bound,
    perceptron_rule,
)

F64 = torch.float64


def separable(n: int, features: int, margin: float, seed: int = 0):
    """Gaussian points labelled by a random hyperplane [u, b], keeping those at least ``margin`` from it."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(features + 1, generator=g, dtype=F64)
    x = torch.randn(4 * n, features, generator=g, dtype=F64)
    score = (x @ direction[:-1] + direction[-1]) / direction.norm()
    keep = (score.abs() >= margin).nonzero()[:n, 0]
    return x[keep], torch.sign(score[keep]), direction


def xor_like(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n, 2, generator=g, dtype=F64) * 2 - 1
    x = x[(x.abs() > 0.1).all(1)][:n]
    return x, torch.sign(x[:, 0] * x[:, 1])


# ---- perceptron ----


@pytest.mark.parametrize("margin", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("shuffle", [False, True])
def test_perceptron_converges_within_the_bound_on_separable_data(margin, shuffle):
    x, y, direction = separable(200, 5, margin)
    g = torch.Generator().manual_seed(1) if shuffle else None
    fit = perceptron_rule(x, y, max_epochs=10_000, generator=g)
    bound = mistake_bound(x, y, direction)
    assert fit.converged and fit.errors[-1] == 0
    assert fit.mistakes <= bound.bound, (fit.mistakes, bound)
    assert bound.margin >= margin - 1e-12
    assert (torch.sign(x @ fit.weight + fit.bias) == y).all()


def test_perceptron_rule_is_scale_free_in_lr():
    x, y, _ = separable(100, 3, 0.2)
    a, b = perceptron_rule(x, y, lr=1.0), perceptron_rule(x, y, lr=0.01)
    assert a.mistakes == b.mistakes and a.errors == b.errors
    torch.testing.assert_close(a.weight * 0.01, b.weight)


def test_perceptron_rule_does_not_converge_on_xor_but_random_association_units_separate_it():
    x, y = xor_like(200)
    assert not perceptron_rule(x, y, max_epochs=30).converged
    machine = Perceptron(2, 200, fan_in=2, generator=torch.Generator().manual_seed(0))
    fit = machine.fit(x, y, max_epochs=200)
    assert fit.converged
    assert torch.equal(machine(x), y)
    assert machine.associate(x).shape == (len(x), 200)
    assert set(machine.associate(x).unique().tolist()) <= {0.0, 1.0}


def test_association_units_are_fixed_and_wired_to_fan_in_sensory_units():
    machine = Perceptron(10, 30, fan_in=3, generator=torch.Generator().manual_seed(0))
    assert ((machine.wiring != 0).sum(1) == 3).all()
    assert set(machine.wiring.unique().tolist()) <= {-1.0, 0.0, 1.0}
    wiring, theta = machine.wiring.clone(), machine.theta.clone()
    x, y, _ = separable(50, 10, 0.3)
    machine.fit(x, y, max_epochs=5)
    assert torch.equal(machine.wiring, wiring) and torch.equal(machine.theta, theta)
    assert not any(p.requires_grad for p in machine.parameters())


def test_perceptron_bad_input_gets_clear_errors():
    x, y, direction = separable(20, 3, 0.2)
    with pytest.raises(ValueError, match=r"labels \+1 or -1"):
        perceptron_rule(x, (y > 0).to(F64), max_epochs=3)
    with pytest.raises(ValueError, match=r"labels of shape \(20,\)"):
        perceptron_rule(x, y[:5])
    with pytest.raises(TypeError, match="floating-point features"):
        perceptron_rule(x.long(), y)
    with pytest.raises(ValueError, match="finite features"):
        perceptron_rule(torch.full_like(x, math.nan), y)
    with pytest.raises(ValueError, match="max_epochs as a positive integer"):
        perceptron_rule(x, y, max_epochs=0)
    with pytest.raises(ValueError, match="does not separate"):
        mistake_bound(x, y, -direction)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        mistake_bound(x, y, direction[:3])
    with pytest.raises(ValueError, match="fan_in <= sensory_size = 2"):
        Perceptron(2, 10, fan_in=3)
    machine = Perceptron(3, 10)
    with pytest.raises(ValueError, match=r"stimulus of shape \(B, 3\)"):
        machine(torch.zeros(4, 2, dtype=F64))
    with pytest.raises(TypeError, match="dtype torch.float64"):
        machine(torch.zeros(4, 3))


def prototypes(n_per_class: int, classes: int = 2, size: int = 64, flip: float = 0.1, draw: int = 0):
    """Binary retinas: ``classes`` random prototypes (the same in every draw) with ``flip`` of their points
    flipped (new flips in each ``draw``), and the class of each."""
    proto = (torch.rand(classes, size, generator=torch.Generator().manual_seed(0)) < 0.35).to(F64)  # (R, S)
    labels = torch.arange(classes).repeat_interleave(n_per_class)  # (B,)
    g = torch.Generator().manual_seed(1 + draw)
    flips = (torch.rand(len(labels), size, generator=g) < flip).to(F64)
    return (proto[labels] - flips).abs(), labels


def source_set_machine(feedback: bool, classes: int = 2, seed: int = 0) -> SourceSetPerceptron:
    return SourceSetPerceptron(64, 300, classes, feedback=feedback, fan_in=10, thresholds=(0.5, 2.5),
                               generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("classes", [2, 3])
def test_feedback_leaves_activity_only_in_the_dominant_source_set(classes):
    s, _ = prototypes(20, classes)
    with_feedback, without = source_set_machine(True, classes), source_set_machine(False, classes)
    g = torch.Generator().manual_seed(1)
    post = with_feedback.postdominant(s, generator=g)
    assert post.response.dtype == torch.long and post.response.shape == (len(s),)
    assert ((post.response >= 0) & (post.response < classes)).all()
    outside = post.activity * (with_feedback.source != post.response[:, None])
    assert outside.sum() == 0  # rule (b): the complement of the dominant source-set is silent
    predominant = with_feedback.associate(s)
    assert torch.equal(post.activity, predominant * (with_feedback.source == post.response[:, None]))
    # without the R-to-A connections nothing is silenced: the postdominant activity is the predominant one
    assert torch.equal(without.postdominant(s, generator=g).activity, without.associate(s))
    # source-sets: disjoint, every A-unit in exactly one, sizes within one of each other
    sizes = torch.bincount(with_feedback.source, minlength=classes)
    assert sizes.sum() == 300 and sizes.max() - sizes.min() <= 1


def test_alpha_system_gains_one_unit_of_value_per_postdominant_activity_in_any_order():
    s, labels = prototypes(15)
    machine = source_set_machine(True)
    post = machine.fit(s, labels)
    expected = (machine.associate(s) * (machine.source == labels[:, None])).sum(0)
    assert torch.equal(machine.value, expected) and torch.equal(post.response, labels)
    shuffled = source_set_machine(True)
    order = torch.randperm(len(s), generator=torch.Generator().manual_seed(2))
    shuffled.fit(s[order], labels[order])
    assert torch.equal(shuffled.value, machine.value)
    free = source_set_machine(False)
    free.fit(s, labels)
    assert torch.equal(free.value, free.associate(s).sum(0))  # every active unit gains, whatever the response


def test_before_learning_the_dominant_response_is_random():
    s, _ = prototypes(200)
    answers = source_set_machine(True)(s, generator=torch.Generator().manual_seed(3))
    assert 0.35 < answers.double().mean().item() < 0.65


def test_feedback_is_what_lets_the_alpha_system_learn():
    s, labels = prototypes(60)
    test_s, test_labels = prototypes(60, draw=1)  # new stimuli of the same classes
    accuracy = {}
    for feedback in (True, False):
        machine = source_set_machine(feedback)
        machine.fit(s, labels)
        answers = machine(test_s, generator=torch.Generator().manual_seed(4))
        accuracy[feedback] = (answers == test_labels).double().mean().item()
    assert accuracy[True] > 0.95 and accuracy[False] < 0.75, accuracy


def test_source_set_perceptron_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="num_responses as an integer >= 2"):
        SourceSetPerceptron(4, 10, 1)
    with pytest.raises(ValueError, match="num_responses <= association_size = 3"):
        SourceSetPerceptron(4, 3, 4)
    with pytest.raises(TypeError, match="feedback as a bool"):
        SourceSetPerceptron(4, 10, 2, feedback=1)
    machine = SourceSetPerceptron(4, 10, 3)
    s = torch.zeros(5, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"responses as a long tensor of shape \(5,\)"):
        machine.fit(s, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"responses as a long tensor"):
        machine.fit(s, torch.zeros(5))
    with pytest.raises(ValueError, match=r"responses in 0..2"):
        machine.fit(s, torch.full((5,), 3))
    with pytest.raises(ValueError, match=r"SourceSetPerceptron: expected stimulus of shape \(B, 4\)"):
        machine(torch.zeros(5, 3, dtype=F64))


# ---- multi-store model ----


def test_sensory_register_decays():
    register = SensoryRegister(0.25)
    assert register.retention(0) == 1.0
    assert register.retention(1.0) == pytest.approx(math.exp(-4))
    survived = register.sample((20_000,), 0.25, torch.Generator().manual_seed(0)).float().mean()
    assert abs(survived.item() - math.exp(-1)) < 0.02
    with pytest.raises(ValueError, match="decay > 0"):
        SensoryRegister(0)
    with pytest.raises(ValueError, match="elapsed time >= 0"):
        register.retention(-1)


@pytest.mark.parametrize("slots", [1, 3, 7])
def test_short_term_store_never_holds_more_than_its_slots(slots):
    model = MultiStoreModel(MultiStoreConfig(buffer_slots=slots))
    with memlib.trace() as tr:
        result = model.free_recall(12, 300, delay=2, generator=torch.Generator().manual_seed(0))
    buffers = torch.stack(tr["multistore.buffer"])  # (L + delay, N, K)
    assert buffers.shape == (14, 300, slots)
    assert ((buffers >= 0).sum(-1) <= slots).all()
    # a list item appears at most once in the buffer
    for step in buffers[:, :5]:
        for row in step:
            items = row[row >= 0]
            assert len(items.unique()) == len(items)
    immediate = model.free_recall(12, 300, generator=torch.Generator().manual_seed(1))
    assert (immediate.in_short_term.sum(1) == slots).all()
    assert (result.in_short_term.sum(1) <= slots).all()


def test_serial_position_curve_has_recency_that_vanishes_with_delay():
    model = MultiStoreModel()
    g = torch.Generator().manual_seed(0)
    L = 20
    now = model.free_recall(L, 3000, generator=g).recalled.float().mean(0)
    later = model.free_recall(L, 3000, delay=30, generator=g).recalled.float().mean(0)
    middle_now, middle_later = now[6:14].mean(), later[6:14].mean()
    assert now[-1] == 1.0  # the last item is always still in the buffer
    assert now[-1] - middle_now > 0.4  # recency
    assert now[0] - middle_now > 0.1  # primacy
    assert later[-1] <= middle_later + 0.05  # recency gone after the delay
    assert later[0] - middle_later > 0.1  # primacy stays: it lives in the long-term store
    assert abs(middle_later - middle_now) < 0.05


def test_rehearsal_builds_long_term_strength_in_proportion_to_time_in_buffer():
    model = MultiStoreModel(MultiStoreConfig(buffer_slots=3, transfer_rate=0.5))
    result = model.free_recall(3, 10, generator=torch.Generator().manual_seed(0))
    # three items, three slots: item j stays from step j to the end, 3 - j steps
    torch.testing.assert_close(result.strength, torch.tensor([1.5, 1.0, 0.5]).expand(10, 3))
    assert result.recalled.all()


def test_multistore_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="buffer_slots as a positive integer"):
        MultiStoreConfig(buffer_slots=0)
    with pytest.raises(ValueError, match="transfer_rate >= 0"):
        MultiStoreConfig(transfer_rate=-0.1)
    model = MultiStoreModel()
    with pytest.raises(ValueError, match="list_length as a positive integer"):
        model.free_recall(0, 10)
    with pytest.raises(ValueError, match="delay as a non-negative integer"):
        model.free_recall(5, 10, delay=-1)
