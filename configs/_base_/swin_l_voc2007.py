# Pascal VOC2007 classification (20 classes), Swin-L, SINGLE-label as the
# official run: each image keeps the class of its first annotated object
# (mmadapter.VOCSingleLabel), softmax cross-entropy, top-1/top-5 accuracy.
# Reads the detection layout data_root/{JPEGImages, Annotations,
# ImageSets/Main}; trains on trainval (5,011 images), tests on test (4,952).
# The standard multi-label protocol: swin_l_voc2007_multilabel.py.
_base_ = ['./swin_l_classification.py']

num_classes = 20
data_root = 'data/VOCdevkit/VOC2007'
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(
        type='mmadapter.VOCSingleLabel', data_root=data_root,
        split='trainval'))
val_dataloader = dict(
    dataset=dict(
        type='mmadapter.VOCSingleLabel', data_root=data_root, split='test'))
test_dataloader = val_dataloader
