from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('mmadapter/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmadapter',
    version=read_version(),
    description='Parameter-efficient tuning (Mona, AdaptFormer, LoRA, '
    'Houlsby, LoRand) of Swin and ViT backbones for OpenMMLab detection '
    'and segmentation',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmadapter', 'mmadapter.*']),
    python_requires='>=3.8',
    # mmcv (compiled ops) and torch are installed by tools/setup_env.sh;
    # the rest is pinned in requirements.txt.
    install_requires=['mmengine>=0.10,<1.0', 'mmdet>=3.3,<3.4',
                      'mmsegmentation>=1.2,<1.3', 'mmpretrain>=1.2,<1.3'],
    license='Apache-2.0',
    zip_safe=False,
)
