"""Ratios to Full and margins above the floor, from the step times of each
timed round."""
import statistics

from bench_report import FLOOR


def quartiles(values):
    """(first quartile, median, third quartile) of ``values``."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method='inclusive')
    return q1, q2, q3


def add_ratios(train, step_seconds, flops=None):
    """Ratios to Full and margins above the floor (when it was measured),
    from each method's step times per round (``step_seconds``: method ->
    list, one entry a round).

    Time ratios and margins are medians over the rounds of each round's own
    ratios: a round's steps of Full, the floor and the method ran seconds
    apart, so a change in the machine's speed between rounds cancels out of
    them. The time margin's interquartile range over the rounds says how
    far one round's estimate moves on this machine.
    """
    full, floor = train['Full'], train.get(FLOOR)
    rounds = range(len(step_seconds['Full']))
    for method, r in train.items():
        times = step_seconds[method]
        r['step_seconds'] = list(times)
        r['seconds'] = statistics.median(times)
        r['time_ratio'] = statistics.median(
            times[i] / step_seconds['Full'][i] for i in rounds)
        r['memory_ratio'] = r['peak_mib'] / full['peak_mib']
        if flops:
            r['flops'] = flops[method]
            r['flop_ratio'] = flops[method] / flops['Full']
    if floor is None:
        return train
    floor_times = step_seconds[FLOOR]
    for method, r in train.items():
        q1, median, q3 = quartiles([
            (step_seconds[method][i] - floor_times[i]) /
            step_seconds['Full'][i] for i in rounds])
        r['time_margin'], r['time_margin_iqr'] = median, [q1, q3]
        r['memory_margin'] = r['memory_ratio'] - floor['memory_ratio']
        if flops:
            r['flop_margin'] = r['flop_ratio'] - floor['flop_ratio']
    return train
