"""The recipes' Adam/AdamW: Keras' arithmetic, a smaller TensorFlow step, and a step traced once."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mhdeblur
from keras_mhdeblur import optimizers
from helpers import TINY_NAFNET, run_python

SHAPES = [(3, 3, 4, 8), (8,), (16, 16), (1, 1, 1, 8)]


def _run(optimizer_class, steps=5, count=1, **kwargs):
    """Variables after `steps` applies of seeded gradients in one tf.function, and that
    function's graph size."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32"))
                 for shape in SHAPES * count]
    initial = [variable.numpy() for variable in variables]
    optimizer = optimizer_class(
        learning_rate=keras.optimizers.schedules.CosineDecay(1e-2, 100), beta_1=0.9,
        beta_2=0.99, epsilon=1e-8, global_clipnorm=0.5, **kwargs)
    optimizer.build(variables)
    step = tf.function(optimizer.apply)
    gradients = np.random.default_rng(1)
    for _ in range(steps):
        step([tf.constant(gradients.normal(size=variable.shape).astype("float32"))
              for variable in variables])
    graph = step.get_concrete_function(
        [tf.TensorSpec(variable.shape, "float32") for variable in variables]).graph
    nodes = len(graph.as_graph_def().node) + sum(
        len(function.node_def) for function in graph.as_graph_def().library.function)
    return [variable.numpy() for variable in variables], initial, nodes, optimizer


@pytest.mark.parametrize("ours, theirs, kwargs", [
    (optimizers.AdamW, keras.optimizers.AdamW, {"weight_decay": 1e-2}),
    (optimizers.Adam, keras.optimizers.Adam, {}),
])
def test_recipe_optimizers_follow_keras_with_a_smaller_step_graph(ours, theirs, kwargs):
    ours_after, initial, ours_nodes, optimizer = _run(ours, count=8, **kwargs)
    keras_after, _, keras_nodes, _ = _run(theirs, count=8, **kwargs)
    for mine, reference, start in zip(ours_after, keras_after, initial):
        moved = np.abs(reference - start).max()
        assert moved > 1e-3  # the steps did something
        # Only rounding: the constants 1 - beta are formed in float32 by the fused kernel.
        assert np.abs(mine - reference).max() <= 1e-5 * moved
    assert int(optimizer.iterations.numpy()) == 5
    # Keras rebuilds the schedule and bias corrections per variable: 32 variables here.
    assert ours_nodes * 2 < keras_nodes, (ours_nodes, keras_nodes)


def test_recipe_optimizer_serialises_as_itself():
    optimizer = keras_mhdeblur.official_optimizer("nafnet", total_steps=1000)
    assert type(optimizer) is optimizers.AdamW
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(optimizer))
    assert type(restored) is optimizers.AdamW
    assert restored.get_config() == optimizer.get_config()


def test_training_step_is_traced_once():
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY_NAFNET)
    model.compile(optimizer=model.official_optimizer(total_steps=10))
    traced = []
    step = model.train_step

    def counting_step(*args):
        traced.append(1)
        return step(*args)

    object.__setattr__(model, "train_step", counting_step)
    images = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    model.train_on_batch(images, images)
    model.train_on_batch(images, images)
    # Keras alone builds the optimiser inside the first trace, and tf.function traces again.
    assert len(traced) == 1


JAX_STEPS = """
import json, numpy as np, keras
from keras_mhdeblur import optimizers
result = []
for cls in (optimizers.AdamW, keras.optimizers.AdamW):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=(4, 4)).astype("float32"))]
    optimizer = cls(learning_rate=1e-2, weight_decay=1e-2, global_clipnorm=0.5)
    optimizer.build(variables)
    gradients = np.random.default_rng(1)
    for _ in range(3):
        optimizer.apply([gradients.normal(size=(4, 4)).astype("float32")])
    result.append(keras.ops.convert_to_numpy(variables[0]).tolist())
print(json.dumps(result))
"""


@pytest.mark.slow
def test_recipe_optimizer_is_keras_own_on_jax():
    ours, theirs = json.loads(run_python(JAX_STEPS, backend="jax").strip().splitlines()[-1])
    np.testing.assert_array_equal(ours, theirs)
