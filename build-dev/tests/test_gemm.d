build-dev/tests/test_gemm: tests/unit/test_gemm.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h \
 include/raffle/gemm.h include/raffle/threads.h include/raffle/kernels.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
include/raffle/gemm.h:
include/raffle/threads.h:
include/raffle/kernels.h:
