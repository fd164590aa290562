import os
import os.path as osp
import shutil
import sys
from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('mmadapter/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(path):
    """The requirement lines of ``path``, following ``-r`` includes."""
    requirements = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line.startswith('-r '):
                requirements += read_requirements(
                    osp.join(osp.dirname(path), line[3:].strip()))
            elif line:
                requirements.append(line)
    return requirements


def add_mim_extension():
    """Put configs/, tools/ and model-index.yml into mmadapter/.mim, as
    OpenMMLab packages do, so that `mim train mmadapter CONFIG` and
    `mim test` find them: links in an editable install, copies in a built
    package."""
    if 'develop' in sys.argv or any('editable' in a for a in sys.argv):
        mode = 'symlink'
    elif any(a in sys.argv for a in ('sdist', 'bdist_wheel', 'install')):
        mode = 'copy'
    else:
        return
    here = osp.dirname(osp.abspath(__file__))
    mim = osp.join(here, 'mmadapter', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        source, target = osp.join(here, name), osp.join(mim, name)
        if not osp.exists(source):
            continue
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        if mode == 'symlink':
            os.symlink(osp.relpath(source, mim), target)
        elif osp.isdir(source):
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmadapter',
        version=read_version(),
        description='Parameter-efficient tuning (Mona, AdaptFormer, LoRA, '
        'Houlsby, LoRand) of Swin and ViT backbones for OpenMMLab '
        'detection, segmentation and classification',
        long_description=open('README.md').read(),
        long_description_content_type='text/markdown',
        packages=find_packages(include=['mmadapter', 'mmadapter.*']),
        include_package_data=True,
        package_data={'mmadapter': ['.mim/**/*', '.mim/*']},
        python_requires='>=3.8',
        # torch, torchvision and mmcv (compiled ops) are the user's own or
        # built by tools/setup_env.sh: never replaced by pip here
        install_requires=read_requirements('requirements/runtime.txt'),
        extras_require={
            'tests': read_requirements('requirements/tests.txt'),
            'mim': read_requirements('requirements/mminstall.txt'),
        },
        license='Apache-2.0',
        zip_safe=False,
    )
