"""recsys-distill: a TFX pipeline that distils a TFRS teacher into a quantized student."""
import setuptools

setuptools.setup(
    name='recsys-distill',
    version='0.1.0',
    description=__doc__,
    python_requires='>=3.10,<3.11',
    py_modules=['compat'],
    package_data={'pipeline': ['schema/*.pbtxt']},
    packages=setuptools.find_packages(
        include=['contract', 'contract.*', 'evaluation', 'evaluation.*', 'ingest', 'ingest.*',
                 'pipeline', 'pipeline.*',
                 'components', 'components.*', 'models', 'models.*', 'serving', 'serving.*',
                 'kubeflow', 'kubeflow.*', 'benchmarks']),
    install_requires=[
        'tfx[kfp]==1.15.1',
        'tensorflow==2.15.1',
        'apache-beam[gcp]==2.56.0',
        'kfp==1.8.22',
        'tensorflow-recommenders==0.7.3',
        'tensorflow-model-optimization==0.8.1',
        'tensorflow-serving-api==2.15.1',
        'matplotlib==3.10.9',
    ],
    extras_require={'test': ['pytest', 'pytest-xdist']},
)
