import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, ising_moe, ising_moe.exact, ising_moe.io, ising_moe.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
