"""Packaging: the runtime `edge_caption/` and the export side `export/`, installed as `edge_caption.export`;
and csrc/: the Cython beam-search core (`edge_caption._beam`) and the CUDA kernels
(`edge_caption/_beam_kernels.so`, a plain shared library the runtime loads with ctypes).

Keeping export/ at the top level keeps export-time code (torch, onnx, transformers) visibly apart
from the runtime, while users import it as `edge_caption.export`.

Both compiled parts are optional: without a C compiler (or Cython) the package falls back to the
Python reference beam search, and without nvcc (or when it fails) there are no CUDA kernels; either
is a warning here, never a failed install. EDGE_CAPTION_CUDA_ARCHS="87;89;90" overrides the GPU
architectures; EDGE_CAPTION_NVCC names the nvcc to use.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

RUNTIME = ["edge_caption", "edge_caption.backends", "edge_caption.backends.torch_cuda", "edge_caption.decoding",
           "edge_caption.evaluation", "edge_caption.manifest", "edge_caption.stream", "edge_caption.serve", "edge_caption.cli"]
EXPORT = ["edge_caption.export", "edge_caption.export.adapters", "edge_caption.export.families"]
HERE = Path(__file__).parent
# Jetson Orin, Ada, Hopper (H100/H200); Thor where this nvcc knows it. PTX of the newest for later GPUs.
CUDA_ARCHS = ("87", "89", "90", "110")
KERNELS = "_beam_kernels.so"


def _extensions() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("warning: Cython is not installed: edge_caption._beam is not built and beam search will use "
              "the Python reference (pip install cython, then reinstall)", file=sys.stderr)
        return []
    # No fused multiply-add: the core must round every float32 operation as numpy does (aarch64 would fuse).
    flags = [] if sys.platform == "win32" else ["-O2", "-ffp-contract=off"]
    ext = Extension("edge_caption._beam", ["csrc/_beam.pyx"], depends=["csrc/rows.pxi"], extra_compile_args=flags,
                    optional=True)
    return cythonize([ext], compiler_directives={"language_level": 3}, quiet=True)


def _nvcc() -> str | None:
    named = os.environ.get("EDGE_CAPTION_NVCC")
    if named:
        return named
    found = shutil.which("nvcc")
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if not found and home and Path(home, "bin", "nvcc").exists():
            found = str(Path(home, "bin", "nvcc"))
    return found


class BuildExt(build_ext):
    """The Cython extension as usual, then the CUDA kernels with nvcc when there is one."""

    def run(self) -> None:
        super().run()
        self._build_cuda()

    def _build_cuda(self) -> None:
        nvcc = _nvcc()
        if nvcc is None:
            print("note: nvcc not found: the CUDA beam kernels are not built (CPU decoding is unaffected)",
                  file=sys.stderr)
            return
        try:
            known = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            print(f"warning: {nvcc} does not run ({err}): the CUDA beam kernels are not built", file=sys.stderr)
            return
        wanted = os.environ.get("EDGE_CAPTION_CUDA_ARCHS", ";".join(CUDA_ARCHS)).replace(",", ";").split(";")
        archs = [a.strip() for a in wanted if a.strip() and f"compute_{a.strip()}" in known]
        if not archs:
            print(f"warning: {nvcc} knows none of the architectures {wanted}: the CUDA beam kernels are not built",
                  file=sys.stderr)
            return
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        gencode.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
        target = Path(self.build_lib) / "edge_caption" / KERNELS
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)      # a failed build must not leave an old library to be installed
        # cudart linked statically: at run time the library needs the NVIDIA driver only, never torch.
        cmd = [nvcc, "-O3", "-shared", "-Xcompiler", "-fPIC", "-cudart", "static", "-std=c++17", *gencode,
               "-o", str(target), str(HERE / "csrc" / "beam_kernels.cu")]
        print("building CUDA beam kernels: " + " ".join(cmd), file=sys.stderr)
        try:
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            print(f"warning: nvcc failed ({err}): the CUDA beam kernels are not built", file=sys.stderr)
            return
        if self.inplace or getattr(self, "editable_mode", False):
            shutil.copyfile(target, HERE / "edge_caption" / KERNELS)

    def get_outputs(self) -> list:
        outputs = super().get_outputs()
        built = Path(self.build_lib) / "edge_caption" / KERNELS
        return outputs + [str(built)] if built.exists() and not self.inplace else outputs


setup(
    packages=RUNTIME + EXPORT,
    package_dir={"edge_caption": "edge_caption", "edge_caption.export": "export"},
    package_data={"edge_caption": ["models/*.ecap/*", "data/*"]},
    include_package_data=False,
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExt},
)
