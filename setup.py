"""keras_mhdeblur: multi-head image deblurring for Keras 3 (arXiv 2208.13029)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="keras_mhdeblur",
    version="0.1.0",
    description="Multi-head (winner-takes-all) image deblurring for Keras 3: NAFNet, HINet, "
    "Restormer and MPRNet, faithful to the official PyTorch code.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_mhdeblur", "keras_mhdeblur.*"]),
    # Shipped presets: keras_mhdeblur/presets/<name>/{config.json, model.weights.h5, metadata.json}
    package_data={"keras_mhdeblur.presets": ["*/*.json", "*/*.weights.h5", "*/*.npz"]},
    install_requires=[
        # TensorFlow is the default backend and the one tf.data and export use. The CPU wheel is
        # enough for everything here; GPU users install `tensorflow[and-cuda]` of the same version.
        "tensorflow-cpu==2.21.*",
        "keras==3.15.*",
        "numpy>=1.26,<3",
        "pillow>=10",
        "pyyaml>=6",
        # `mhdeblur train` writes TensorBoard logs (tf.summary needs the package).
        "tensorboard==2.21.*",
        # Export verification runs in the LiteRT interpreter where its wheel exists
        # (tf.lite.Interpreter, deprecated, elsewhere).
        "ai-edge-litert==2.3.*; platform_system == 'Linux' and platform_machine == 'x86_64'",
    ],
    extras_require={
        # scikit-image: the tests use its bundled photos (held-out pairs of the shipped preset)
        "test": ["pytest>=8", "jax[cpu]==0.10.*", "scikit-image>=0.24"],
        "jax": ["jax[cpu]==0.10.*"],
        "torch": ["torch==2.13.0"],
        "litert": ["ai-edge-litert==2.3.*"],
        # the built-in synthetic source also uses the photos bundled with scikit-image
        "photos": ["scikit-image>=0.24"],
        # more bundled photos for the source option photo_packages (data.sources.BUNDLED_PHOTOS)
        "more-photos": ["scikit-image>=0.24", "scikit-learn>=1.4", "matplotlib>=3.8",
                        "PyWavelets>=1.6", "mahotas>=1.4.15", "imgaug>=0.4"],
    },
    entry_points={"console_scripts": ["mhdeblur=keras_mhdeblur.cli:main"]},
)
