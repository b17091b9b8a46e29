"""Paired deblurring data: datasets on disk, synthetic GoPro-style blur, input pipelines."""

from keras_mhdeblur.data.augment import (Augmentation, augment_pair, augment_pair_tf,
                                         dihedral_transform, undo_dihedral_transform)
from keras_mhdeblur.data.datasets import (ImagePair, PairInfo, PairSet, find_pairs, flat_pairs,
                                          folder_pairs, gopro_pairs, realblur_pairs,
                                          summarize_dataset)
from keras_mhdeblur.data.dead_leaves import dead_leaves_image
from keras_mhdeblur.data.io import DataError, ImageInfo, inspect_image, read_image, write_png
from keras_mhdeblur.data.pipeline import (PairedPyDataset, StreamBatches, SyntheticBatches,
                                          SyntheticPyDataset, evaluation_dataset,
                                          iter_evaluation_pairs, synthetic_dataset,
                                          training_dataset)
from keras_mhdeblur.data.samples import folder_crops, synthetic_blurry_images
from keras_mhdeblur.data.sources import BuiltinSource, FolderSource
from keras_mhdeblur.data.synthetic import (BlurSettings, SyntheticPair, SyntheticPairs,
                                           linear_to_srgb, make_synthetic_set,
                                           random_camera_trajectory, srgb_to_linear,
                                           sharp_at_pose, steady_camera_trajectory,
                                           synthesize_blur, write_synthetic_set)
