# Pascal VOC2007 classification, the standard MULTI-label protocol (not the
# paper's table, which is single-label: swin_l_voc2007.py): every class
# present in an image is a target (difficult ones ignored in the metrics),
# sigmoid cross-entropy, VOC mAP (VOCAveragePrecision) and precision /
# recall / F1 as in mmpretrain's voc_bs16 setting. The rest of the recipe is
# the table's.
_base_ = ['./swin_l_classification.py']

num_classes = 20
data_root = 'data/VOCdevkit/VOC2007'
model = dict(
    head=dict(
        _delete_=True,
        type='MultiLabelLinearClsHead',
        num_classes=num_classes,
        in_channels=1536,
        loss=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)))
data_preprocessor = dict(num_classes=num_classes, to_onehot=True)

# `gt_label_difficult` is needed by the VOC metrics
test_pipeline = _base_.test_pipeline[:-1] + [
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'flip', 'flip_direction',
                   'gt_label_difficult'))
]
train_dataloader = dict(
    dataset=dict(type='VOC', data_root=data_root, split='trainval'))
val_dataloader = dict(
    dataset=dict(
        type='VOC', data_root=data_root, split='test',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='VOCMultiLabelMetric'),
    dict(type='VOCMultiLabelMetric', average='micro'),
    dict(type='VOCAveragePrecision')
]
test_evaluator = val_evaluator
