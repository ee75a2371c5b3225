# nb_maint — build and test against another nginx version (issue 11)
#
#   make NGINX_VERSION=1.29.8          nginx 1.29.8 + both modules in build/nginx-1.29.8/
#   make test NGINX_VERSION=1.29.8     the whole suite with that nginx binary
#
# Sources: $(NGINX_TARBALLS)/nginx-<v>.tar.gz, `git archive` trees of the
# official repository (configure is auto/configure).  Without NGINX_VERSION
# everything stays on Debian's nginx and /usr/share/nginx/src.

NGINX_TARBALLS ?= $(CURDIR)/../shared/nginx-src
# every version CI builds with -Werror (the tests run on some of them)
NGINX_MATRIX   ?= 1.24.0 1.26.3 1.28.3 1.29.8
NGX_JOBS       ?= 2

# what the tests need, close to Debian's own configure flags; nginx adds
# -Werror to gcc's flags by itself, we say it anyway
NGX_VFLAGS := --with-compat --with-debug --with-pcre-jit --with-threads \
    --with-http_ssl_module --with-http_v2_module --with-http_realip_module \
    --with-http_stub_status_module --with-http_auth_request_module \
    --with-http_sub_module --with-http_gzip_static_module \
    --with-http_gunzip_module --with-http_slice_module --with-http_dav_module \
    --with-stream=dynamic --with-stream_ssl_module \
    --with-stream_realip_module --with-stream_ssl_preread_module \
    --error-log-path=stderr

.DEFAULT_GOAL := all

ifneq ($(NGINX_VERSION),)

NGX_TREE   := $(BUILD)/nginx-$(NGINX_VERSION)
MODULE_SO  := $(NGX_TREE)/modules/ngx_http_nb_maint_module.so
STREAM_SO  := $(NGX_TREE)/modules/ngx_stream_nb_maint_module.so
NGINX_BIN  := $(CURDIR)/$(NGX_TREE)/objs/nginx
# the tests load Debian's stream core unless told otherwise
export NB_STREAM_CORE := $(CURDIR)/$(NGX_TREE)/objs/ngx_stream_module.so

$(NGX_TREE)/objs/Makefile: config $(NGINX_TARBALLS)/nginx-$(NGINX_VERSION).tar.gz
	rm -rf $(NGX_TREE) && mkdir -p $(BUILD)
	tar -xzf $(NGINX_TARBALLS)/nginx-$(NGINX_VERSION).tar.gz -C $(BUILD)
	mkdir -p $(NGX_TREE)/modules
	cd $(NGX_TREE) && NB_MAINT_GEN=$(CURDIR)/$(GEN) ./auto/configure \
	    $(NGX_VFLAGS) --with-cc-opt="-O2 -g -Werror" \
	    --add-dynamic-module=$(CURDIR) > configure.log 2>&1 \
	  || { tail -30 configure.log; exit 1; }

# nginx itself (and the stream core module) before our two modules
$(NGX_TREE)/objs/nginx: $(NGX_TREE)/objs/Makefile $(SRCS) \
                        $(GEN)/ngx_http_nb_maint_page_html.h \
                        $(GEN)/ngx_http_nb_maint_dashboard_html.h
	$(MAKE) -j$(NGX_JOBS) -C $(NGX_TREE) -f objs/Makefile

$(MODULE_SO): $(NGX_TREE)/objs/nginx

endif

# every version of the matrix builds (CI); one at a time, -j$(NGX_JOBS)
.PHONY: build-matrix
build-matrix:
	@for v in $(NGINX_MATRIX); do \
	  echo "== nginx $$v"; \
	  $(MAKE) --no-print-directory NGINX_VERSION=$$v build || exit 1; \
	done
