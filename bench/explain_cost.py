r"""The cost of explaining one digit (`digitlab.explain.explain_view`), per model, one CPU thread.

    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/explain_cost.py
    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/explain_cost.py \
        --models lenet vggbn --digits 20

An explanation is one prediction plus Integrated Gradients for the answer and the runner-up:
STEPS points on the path from the empty image, each a forward and a backward pass, for two
classes, in one batch. Its cost does not depend on the weights, so the models are the registry's
with fresh weights (seed 0); `ensemble` is five vggbn averaged, as the `ensemble` recipe saves.
Each row times the same real test digits one at a time: the explanation, a prediction of one
digit (batch 1) for the ratio, and the PNG that `digitlab explain` draws for one digit. Medians
of the thread's CPU time.
"""

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from digitlab.data import load_mnist, to_float
from digitlab.explain import STEPS, explain_view
from digitlab.models import Ensemble, create_model, list_models
from digitlab.plots import plot_heat_maps
from digitlab.predict import Predictor

ENSEMBLE_MEMBERS = 5


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "ensemble":
        return Ensemble([create_model("vggbn") for _ in range(ENSEMBLE_MEMBERS)]).eval()
    return create_model(name).eval()


def median_ms(action: Callable[[torch.Tensor], object], views: list[torch.Tensor]) -> float:
    """The median CPU time of this thread per call, in ms.

    CPU time rather than wall time: on a machine shared with other work, waiting for a core
    is not the explanation's cost. With one torch thread, forward and backward passes both run
    on the calling thread, so its CPU time is all of the work.
    """
    action(views[0])  # warm-up: lazy set-up is not the steady cost
    times = []
    for view in views:
        started = time.thread_time()
        action(view)
        times.append((time.thread_time() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=[*list_models("digits"), "ensemble"])
    parser.add_argument("--digits", type=int, default=50, help="test digits timed per model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mnist = load_mnist()
    views = list(to_float(mnist.test_images[: args.digits]))  # each (1, 28, 28)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread,")
    print(f"{args.digits} test digits, Integrated Gradients with {STEPS} steps × 2 classes.")
    print("CPU ms per digit, medians.\n")
    print("| model | explain ms | predict ms (batch 1) | ratio | heat-map PNG ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        png = Path(folder) / "explained.png"
        for name in args.models:
            predictor = Predictor(build(name), {"model": name}, torch.device("cpu"))
            explain_ms = median_ms(lambda v, p=predictor: explain_view(p, v), views)
            predict_ms = median_ms(lambda v, p=predictor: p.predict_tensor(v[None]), views)
            explanation = explain_view(predictor, views[0])
            maps = [("answer", explanation.answer.map), ("runner-up", explanation.runner_up.map)]
            picture_ms = median_ms(lambda v, m=maps: plot_heat_maps(v, m, "digit", png), views)
            print(
                f"| {name} | {explain_ms:.1f} | {predict_ms:.2f} | {explain_ms / predict_ms:.0f}× "
                f"| {picture_ms:.0f} |"
            )


if __name__ == "__main__":
    main()
