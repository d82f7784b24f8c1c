# Sourced by the device scripts: cubecl loads libcuda and libnvrtc at run time; where the
# loader does not know libnvrtc, point LD_LIBRARY_PATH at the CUDA toolkit's or PyTorch's copy.
if ! ldconfig -p 2>/dev/null | grep -q libnvrtc; then
    nvrtc=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib \
        "$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)/nvidia" \
        -name 'libnvrtc.so*' 2>/dev/null | head -1)
    [[ -n $nvrtc ]] && export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "libnvrtc: ${nvrtc:-not found}"
fi
