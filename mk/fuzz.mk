# make fuzz: libFuzzer targets for every parser the module owns (t/fuzz/).
#
#   make fuzz                      every target FUZZ_SECONDS (60) seconds
#   make fuzz FUZZ_TARGETS=state   one of them
#   make fuzz-build                the binaries only (build/fuzz/fuzz_<t>)
#
# t/fuzz/nb_fuzz.c includes every module source file listed in ./config
# (so static parsers are reached as they are) and is linked with the
# objects of mk/asan.mk's nginx, main() renamed away.  Seeds live in
# t/fuzz/<target>/; what libFuzzer finds goes to build/fuzz/corpus/<target>/,
# crashes to build/fuzz/crash-<target>-*; per-target executions to
# build/fuzz/summary.txt.  t/190.fuzz_corpus.t replays every seed (and every
# file in t/fuzz/regress/<target>/) through the binaries in the suite.

, := ,
FUZZ_TARGETS ?= admin admin_body node_id accept cookie state redis agent ws
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize=alignment \
                -fno-omit-frame-pointer
FUZZ_INCS    := $(foreach d,src/core src/event src/event/modules src/os/unix \
                  objs src/http src/http/modules src/http/v2 src/stream,\
                  -I $(ASAN_TREE)/$(d)) \
                -I ngx_nb_maint_module -I $(GEN) -I $(FUZZ_DIR) -I t/fuzz
FUZZ_WRAP    := $(foreach f,ngx_http_send_header ngx_http_output_filter \
                  ngx_http_finalize_request ngx_http_discard_request_body \
                  ngx_http_read_client_request_body,-Wl$(,)--wrap=$(f))
FUZZ_LIBS    := -ldl -lpthread -lcrypt -lpcre2-8 -lssl -lcrypto -lz \
                -lcjson -lhiredis
FUZZ_RUNOPTS := detect_leaks=1:abort_on_error=1:symbolize=1

.PHONY: fuzz fuzz-build

# the module's sources, as ./config lists them
$(FUZZ_DIR)/nb_fuzz_srcs.h: config
	@mkdir -p $(FUZZ_DIR)
	grep -o 'NB_MAINT_SRC/[A-Za-z0-9_]*\.c' config \
	  | sed 's|NB_MAINT_SRC/\(.*\)|#include "\1"|' > $@.tmp && mv $@.tmp $@

# nginx without main(): every object of the sanitizer build but the stream
# module's (the agent target brings its own two stream symbols)
$(FUZZ_DIR)/libngx.a: $(ASAN_NGINX)
	@mkdir -p $(FUZZ_DIR)
	objcopy --redefine-sym main=nb_fuzz_nginx_main \
	  $(ASAN_TREE)/objs/src/core/nginx.o $(FUZZ_DIR)/nginx.o
	rm -f $@ && ar rcs $@ $(FUZZ_DIR)/nginx.o $(ASAN_TREE)/objs/ngx_modules.o \
	  $$(find $(ASAN_TREE)/objs/src -name '*.o' ! -path '*/stream/*' \
	     ! -name nginx.o | sort)

$(FUZZ_DIR)/nb_fuzz.o: t/fuzz/nb_fuzz.c t/fuzz/nb_fuzz.h \
                       $(FUZZ_DIR)/nb_fuzz_srcs.h $(SRCS) $(GEN_HDRS) \
                       $(ASAN_NGINX)
	$(ASAN_CC) -c -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Wall \
	  -Wno-unused-function $(FUZZ_INCS) -o $@ $<

$(FUZZ_DIR)/fuzz_%: t/fuzz/nb_fuzz_main.c $(FUZZ_DIR)/nb_fuzz.o \
                    $(FUZZ_DIR)/libngx.a
	$(ASAN_CC) -g $(FUZZ_SAN) -fsanitize=fuzzer -DNB_FUZZ_TARGET=nb_fuzz_$* \
	  -I t/fuzz -o $@ $< $(FUZZ_DIR)/nb_fuzz.o $(FUZZ_DIR)/libngx.a \
	  $(FUZZ_WRAP) $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: deps fuzz-build
	@: > $(FUZZ_DIR)/summary.txt; rc=0; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  ASAN_OPTIONS=$(FUZZ_RUNOPTS) UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$$t- \
	    $(FUZZ_DIR)/corpus/$$t t/fuzz/$$t > $(FUZZ_DIR)/$$t.log 2>&1 \
	    || { rc=1; echo "fuzz $$t: FAILED, see $(FUZZ_DIR)/$$t.log"; }; \
	  n=$$(grep -o 'stat::number_of_executed_units: *[0-9]*' \
	         $(FUZZ_DIR)/$$t.log | awk '{s+=$$2} END {print s+0}'); \
	  c=$$(ls $(FUZZ_DIR)/corpus/$$t | wc -l); \
	  echo "$$t: $$n executions in $(FUZZ_SECONDS) s, corpus $$c" \
	    | tee -a $(FUZZ_DIR)/summary.txt; \
	done; exit $$rc
