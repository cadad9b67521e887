"""Task networks: the classifier for any C, H, W; training on a separable problem; save/load; TaskFeatures; how a
config picks a task class."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scenefit.engines.base import LabelTable
from scenefit.tasks import Classifier, SegNet, TaskConfig, TaskFeatures, content_loss, load_task, task_class, task_name

TABLE3 = LabelTable(("left", "middle", "right"))


def _bars(n: int, seed: int, h: int = 32, w: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB images (n, 3, h, w) on noise with one bright vertical bar whose position (left/middle/right) is the class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = 0.3 * torch.rand(n, 3, h, w, generator=g)
    for i, c in enumerate(labels.tolist()):
        x0 = 4 + c * 12 + int(torch.randint(0, 3, (1,), generator=g))
        images[i, :, 4:-4, x0 : x0 + 5] += 0.6
    return images.clamp(0, 1), labels


def test_classifier_build_shapes_for_three_classes_and_32x40():
    torch.manual_seed(0)
    net = Classifier.build(3, 32, 40, TABLE3, {}).eval()
    x = torch.rand(4, 3, 32, 40)
    # conv 5x5 -> 28x36, pool -> 14x18; conv 5x5 -> 10x14, pool -> 5x7
    assert net.features(x, "conv1").shape == (4, 10 * 14 * 18)
    assert net.features(x, "conv2").shape == (4, 20 * 5 * 7)
    assert net.fc1.in_features == 700
    assert net.features(x, "fc1").shape == (4, 50) and net.features(x, "fc2").shape == (4, 100)
    assert net(x).shape == (4, 3) and torch.equal(net(x), net.features(x, "logits"))
    pred = net.predict(x)
    assert pred.shape == (4,) and pred.dtype == torch.int64 and pred.max() < 3
    assert net.build_args == {"channels": 3, "height": 32, "width": 40, "args": {}}
    assert (Classifier.label_kind, Classifier.content_layer, Classifier.set_layer, Classifier.metric) == ("class", "conv1", "fc2", "accuracy")
    with pytest.raises(ValueError, match=r"^the classifier needs images of at least 16x16 px, got 12x40$"):
        Classifier.build(3, 12, 40, TABLE3, {})
    with pytest.raises(ValueError, match=r"^the classifier takes no task.args, got \['width'\]$"):
        Classifier.build(3, 32, 40, TABLE3, {"width": 2})
    with pytest.raises(ValueError, match=r"^unknown feature layer 'fc9'; choose one of \['conv1', 'conv2', 'fc1', 'fc2', 'logits'\]$"):
        net.features(x, "fc9")


@pytest.fixture(scope="module")
def trained() -> Classifier:
    torch.set_num_threads(1)
    images, labels = _bars(96, seed=0)
    return Classifier.train_net(images, labels, TABLE3, TaskConfig(epochs=12, batch_size=16, lr=3e-3), seed=0, progress=False)


def test_train_net_learns_a_separable_problem(trained):
    test_images, test_labels = _bars(60, seed=1)
    res = trained.score(test_images, test_labels)
    assert res["metric"] == "accuracy" and res["score"] >= 0.9, res
    assert res["score"] == pytest.approx((trained.predict(test_images) == test_labels).float().mean().item())
    assert not trained.training


def test_train_net_is_deterministic_and_checks_shapes():
    images, labels = _bars(24, seed=2)
    cfg = TaskConfig(epochs=1, batch_size=8)
    a = Classifier.train_net(images, labels, TABLE3, cfg, seed=5, progress=False)
    b = Classifier.train_net(images, labels, TABLE3, cfg, seed=5, progress=False)
    c = Classifier.train_net(images, labels, TABLE3, cfg, seed=6, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.fc3.weight, c.fc3.weight)
    with pytest.raises(ValueError, match=r"^classifier training needs images \(N, C, H, W\) and labels \(N,\), got \(24, 3, 32, 40\), \(23,\)$"):
        Classifier.train_net(images, labels[:23], TABLE3, cfg, seed=0, progress=False)


def test_save_load_round_trip_gives_identical_predictions(trained, tmp_path):
    images, _ = _bars(30, seed=3)
    path = tmp_path / "f.safetensors"
    trained.save(path, "classifier", {"recipe": {"epochs": 12}})
    again = load_task(path, Classifier, "classifier")
    assert not again.training and again.labels == TABLE3 and again.build_args == trained.build_args
    assert torch.equal(again.predict(images), trained.predict(images))
    with torch.no_grad():
        assert torch.equal(again(images), trained(images))
    with pytest.raises(ValueError, match=r"f\.safetensors is not a 'segmenter' task-network checkpoint \(kind='task', task='classifier'\)$"):
        load_task(path, SegNet, "segmenter")


def test_task_features_resize_their_input(trained):
    x = torch.rand(3, 3, 64, 80, generator=torch.Generator().manual_seed(4))
    fn = TaskFeatures(trained, "conv1", size=(32, 40))
    with torch.no_grad():
        expected = trained.features(F.interpolate(x, size=(32, 40), mode="area"), "conv1")
        assert torch.equal(fn(x), expected)
        assert fn(x).shape == (3, 10 * 14 * 18)
    assert torch.allclose(fn.batched(x, batch=2), expected)
    small = x[:, :, :32, :40]
    with torch.no_grad():
        assert torch.equal(TaskFeatures(trained, "fc2")(small), trained.features(small, "fc2"))  # size None: as they come
    with pytest.raises(ValueError, match=r"^unknown feature layer 'aspp' for Classifier; choose one of \['conv1', 'conv2', 'fc1', 'fc2', 'logits'\]$"):
        TaskFeatures(trained, "aspp")


def test_content_loss_is_one_minus_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    assert torch.allclose(content_loss(a, b), torch.tensor([1.0, 0.0, 2.0]), atol=1e-6)


def test_task_class_follows_the_engine_labels():
    assert task_class(TaskConfig(), "class") is Classifier and task_name(TaskConfig(), "class") == "classifier"
    assert task_class(TaskConfig(), "mask") is SegNet and task_name(TaskConfig(), "mask") == "segmenter"
    assert task_class(TaskConfig(name="segmenter"), "mask") is SegNet
    with pytest.raises(ValueError, match=r"^task.name 'classifier' predicts 'class' labels but the engine's labels are 'mask'$"):
        task_class(TaskConfig(name="classifier"), "mask")
    with pytest.raises(ValueError, match=r"^task.name 'segmenter' predicts 'mask' labels but the engine's labels are 'class'$"):
        task_class(TaskConfig(name="segmenter"), "class")
    with pytest.raises(ValueError, match=r"^task.name: unknown task 'resnet'; known: \['classifier', 'segmenter'.*\], or give 'package.module:Class'$"):
        task_class(TaskConfig(name="resnet"), "class")
    with pytest.raises(ValueError, match=r"^task.name 'scenefit.engines.base:LabelTable' is not a scenefit.tasks.TaskNet subclass$"):
        task_class(TaskConfig(name="scenefit.engines.base:LabelTable"), "class")
