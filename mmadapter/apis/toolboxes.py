"""The OpenMMLab toolboxes a config can belong to (mmdet, mmseg,
mmpretrain) and what differs between them at test time: visualization,
prediction dumps, test-time augmentation, and the stock inference API
(``mmdet.apis`` / ``mmseg.apis``: build a model for inference, run it on
images, draw a result with the stock visualiser).

The toolbox is read from the config's ``default_scope``; training needs no
toolbox-specific handling. (A *task*, elsewhere in mmadapter, is one trained
adapter set with its neck and head.)
"""
import copy
import warnings
from abc import ABC, abstractmethod
from argparse import Namespace
from typing import Dict, List, Optional

from mmengine.config import Config, ConfigDict

from mmadapter.datasets.config_entries import evaluator_metrics


class UnsupportedToolboxError(ValueError):
    """The config's ``default_scope`` is not mmdet, mmseg or mmpretrain."""


class Toolbox(ABC):
    scope: str
    visualization_hook: str
    default_tta_model: dict

    @abstractmethod
    def enable_visualization(self, cfg: Config, show: bool,
                             show_dir: Optional[str],
                             wait_time: float) -> None:
        """Make the visualization hook draw (and show or save) results."""

    @abstractmethod
    def add_prediction_dump(self, cfg: Config, out: str) -> None:
        """Make testing also save the raw predictions to ``out``."""

    # the stock inference API (multi-task serving); not abstract, so that a
    # toolbox without it (classification) still works for the options above
    def init_model(self, cfg: Config, device: str):
        """The model of ``cfg`` built for inference (no weights loaded), as
        the stock ``init_detector`` / ``init_model`` builds it."""
        raise self._no_inference_api()

    def inference(self, model, images):
        """Results of the stock inference function on ``images`` (a path or
        array, or a list of them)."""
        raise self._no_inference_api()

    def visualizer(self, name: str):
        """The stock visualiser of this toolbox."""
        raise self._no_inference_api()

    def _no_inference_api(self) -> UnsupportedToolboxError:
        return UnsupportedToolboxError(
            f'Inference through the stock API is not supported for '
            f'{self.scope} configs (detection and segmentation are).')

    def draw(self, model, image, result, out_file: str,
             score_thr: float = 0.3) -> None:
        """Write ``result`` on ``image`` (RGB array) to ``out_file`` as the
        stock visualiser draws it."""
        visualizer = self.visualizer(f'mmadapter_{self.scope}_{id(model)}')
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('result', image, data_sample=result,
                                  draw_gt=False, show=False,
                                  out_file=out_file,
                                  **self.draw_options(score_thr))

    def draw_options(self, score_thr: float) -> dict:
        return {}

    def visualization_cfg(self, cfg: Config) -> ConfigDict:
        hooks = cfg.get('default_hooks') or {}
        if 'visualization' not in hooks:
            raise ValueError(
                '--show / --show-dir need a visualization hook: add '
                f"default_hooks.visualization=dict(type="
                f"'{self.visualization_hook}') to the config.")
        return hooks['visualization']


def add_pickle_dump(cfg: Config, out: str, predictions: str,
                    dump_metric: str) -> None:
    """Add the toolbox's ``dump_metric`` to the test evaluator, saving the
    raw ``predictions`` (e.g. 'detection') to the pickle file ``out``."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(
            f'--out {out!r}: {predictions} predictions are dumped to a '
            'pickle file; give a path ending in .pkl or .pickle.')
    cfg.test_evaluator = [
        *evaluator_metrics(cfg.test_evaluator),
        dict(type=dump_metric, out_file_path=out)]


class DetectionToolbox(Toolbox):
    scope = 'mmdet'
    visualization_hook = 'DetVisualizationHook'
    # mmdet's tools/test.py default: flip TTA merged by NMS
    default_tta_model = dict(
        type='DetTTAModel',
        tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                     max_per_img=100))

    def enable_visualization(self, cfg, show, show_dir, wait_time):
        from mmdet.engine.hooks.utils import trigger_visualization_hook
        self.visualization_cfg(cfg)  # the clear error when it is missing
        trigger_visualization_hook(
            cfg, Namespace(show=show, show_dir=show_dir, wait_time=wait_time))

    def init_model(self, cfg, device):
        from mmdet.apis import init_detector
        with warnings.catch_warnings():  # 'checkpoint is None': loaded next
            warnings.simplefilter('ignore')
            return init_detector(cfg, checkpoint=None, device=device)

    def inference(self, model, images):
        from mmdet.apis import inference_detector
        return inference_detector(model, images)

    def visualizer(self, name):
        from mmdet.visualization import DetLocalVisualizer
        return DetLocalVisualizer.get_instance(name)

    def draw_options(self, score_thr):
        return dict(pred_score_thr=score_thr)

    def add_prediction_dump(self, cfg, out):
        add_pickle_dump(cfg, out, 'detection', 'DumpDetResults')


class SegmentationToolbox(Toolbox):
    scope = 'mmseg'
    visualization_hook = 'SegVisualizationHook'
    default_tta_model = dict(type='SegTTAModel')

    def enable_visualization(self, cfg, show, show_dir, wait_time):
        hook = self.visualization_cfg(cfg)
        hook['draw'] = True
        if show:
            hook['show'] = True
            hook['wait_time'] = wait_time
        if show_dir:
            cfg.visualizer['save_dir'] = show_dir

    def init_model(self, cfg, device):
        from mmseg.apis import init_model
        return init_model(cfg, checkpoint=None, device=device)

    def inference(self, model, images):
        from mmseg.apis import inference_model
        return inference_model(model, images)

    def visualizer(self, name):
        from mmseg.visualization import SegLocalVisualizer
        return SegLocalVisualizer.get_instance(name)

    def add_prediction_dump(self, cfg, out):
        metrics = cfg.test_evaluator
        for metric in metrics if isinstance(metrics, list) else [metrics]:
            metric['output_dir'] = out
            metric['keep_results'] = True


class ClassificationToolbox(Toolbox):
    scope = 'mmpretrain'
    visualization_hook = 'VisualizationHook'
    # mmpretrain's tools/test.py default: scores averaged over flips
    default_tta_model = dict(type='AverageClsScoreTTA')

    def enable_visualization(self, cfg, show, show_dir, wait_time):
        hook = self.visualization_cfg(cfg)
        hook['enable'] = True
        hook['show'] = show
        hook['wait_time'] = wait_time
        hook['out_dir'] = show_dir

    def add_prediction_dump(self, cfg, out):
        add_pickle_dump(cfg, out, 'classification', 'DumpResults')


TOOLBOXES: Dict[str, Toolbox] = {
    toolbox.scope: toolbox
    for toolbox in (DetectionToolbox(), SegmentationToolbox(),
                    ClassificationToolbox())
}


def toolbox_of(cfg: Config) -> Toolbox:
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise UnsupportedToolboxError(
            f"This option supports detection (default_scope='mmdet'), "
            f"segmentation (default_scope='mmseg') and classification "
            f"(default_scope='mmpretrain') configs; this config's "
            f'default_scope is {scope!r}.')
    return TOOLBOXES[scope]


def innermost_dataset(dataset_cfg: ConfigDict) -> ConfigDict:
    while 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def flip_tta_pipeline(test_pipeline: List[dict]) -> List[dict]:
    """The test pipeline with its final packing step run on the image and
    on its horizontal flip.

    The unflipped view comes first: TTA models keep the first view's data
    sample, and metrics that read ground truth from it (VOCMetric, IoUMetric)
    must see the unflipped annotations.
    """
    pack = copy.deepcopy(test_pipeline[-1])
    if 'meta_keys' in pack:
        pack['meta_keys'] = tuple(pack['meta_keys']) + tuple(
            k for k in ('flip', 'flip_direction')
            if k not in pack['meta_keys'])
    flips = [dict(type='RandomFlip', prob=0.),
             dict(type='RandomFlip', prob=1.)]
    return [*copy.deepcopy(test_pipeline[:-1]),
            dict(type='TestTimeAug', transforms=[flips, [pack]])]


def enable_tta(cfg: Config) -> None:
    """Wrap ``cfg.model`` in the config's ``tta_model`` and test with its
    ``tta_pipeline``; either defaults to horizontal-flip TTA when the config
    has none."""
    toolbox = toolbox_of(cfg)
    test_dataset = innermost_dataset(cfg.test_dataloader.dataset)
    if 'tta_model' not in cfg:
        cfg.tta_model = copy.deepcopy(toolbox.default_tta_model)
    if 'tta_pipeline' not in cfg:
        cfg.tta_pipeline = flip_tta_pipeline(test_dataset.pipeline)
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_dataset.pipeline = cfg.tta_pipeline
