build-dev/src/nn/gemm_rows.o: src/nn/gemm_rows.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h \
 include/raffle/kernels.h \
 /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-pthread/openblas_config.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
include/raffle/kernels.h:
/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-pthread/openblas_config.h:
