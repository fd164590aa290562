"""Training hooks of mmadapter."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmadapter.analysis import parameter_report
from mmadapter.registry import HOOKS


@HOOKS.register_module()
class ParameterReportHook(Hook):
    """Logs the trainable-parameter table when training starts and stops
    the run before it begins when nothing would train."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        report = parameter_report(model)
        runner.logger.info('Parameter report:\n' + report.table())
        if report.model_trainable == 0:
            raise RuntimeError(
                'No parameter of the model trains: the tuning policy and the '
                'config freeze everything. Give the backbone an adapter, pick '
                "another tuning policy (e.g. tuning='adapter' or 'full'), or "
                'unfreeze the neck/head.')
