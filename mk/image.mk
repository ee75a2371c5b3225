# nb_maint — the gateway's container image (issue 20)
#
#   make image     nb-maint-gateway:<version> (and :latest) in the local
#                  podman/buildah storage, and build/image/nb-maint-gateway_<v>.tar
#                  (docker-archive: `docker load -i` it, or push it with podman)
#
# Built offline from what this machine reaches: a Debian 12 root file system
# from the Debian mirror of this machine's apt sources (mmdebstrap: nginx,
# libnginx-mod-stream, perl and the module's libraries), the modules of
# `make`, the CLI, the snippets and the page, laid out as the .deb lays them
# out; assembled with buildah (no container is run to build it).  Needs root
# (mmdebstrap --mode=root, buildah's storage); mmdebstrap, buildah and podman
# (and runc, the runtime t/188 falls back to) are installed from Debian when
# missing.  The root file system is cached in
# build/image/rootfs.tar (a few minutes to make); `make image-clean` drops it.

IMAGE_NAME   ?= nb-maint-gateway
IMAGE_TAG    ?= $(DEB_VERSION)
IMAGE_DIR    := $(BUILD)/image
IMAGE_ROOTFS := $(IMAGE_DIR)/rootfs.tar
IMAGE_STAGE  := $(IMAGE_DIR)/stage
IMAGE_TAR    := $(IMAGE_DIR)/$(IMAGE_NAME)_$(IMAGE_TAG).tar
IMAGE_ID     := $(IMAGE_DIR)/image.id
IMAGE_SOURCES ?= $(firstword $(wildcard /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list))
IMAGE_PKGS   := nginx,libnginx-mod-stream,perl,libhiredis0.14,libcjson1
IMAGE_UID    := 10001
IMAGE_FILES  := $(wildcard deploy/image/*) deploy/compose/nginx.conf \
                $(wildcard static/nginx/*.conf) static/page.html \
                scripts/nb-maint $(wildcard scripts/lib/*.pm scripts/lib/NbMaint/*.pm)

.PHONY: image image-deps image-clean

image: $(IMAGE_ID)

image-deps:
	@[ "$$(id -u)" = 0 ] || { echo "make image: needs root (mmdebstrap --mode=root, buildah storage)"; exit 1; }
	@missing=""; for p in mmdebstrap buildah podman runc; do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then echo "image: installing$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

# Debian 12 with the packages, the user nb-maint (uid 10001), no docs
$(IMAGE_ROOTFS): | image-deps
	@mkdir -p $(IMAGE_DIR)
	@[ -n "$(IMAGE_SOURCES)" ] || { echo "make image: no apt sources file"; exit 1; }
	mmdebstrap --mode=root --variant=essential --format=tar --include=$(IMAGE_PKGS) \
	  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	  --customize-hook='echo "nb-maint:x:$(IMAGE_UID):$(IMAGE_UID):nb_maint gateway:/var/lib/nb-maint:/usr/sbin/nologin" >> "$$1/etc/passwd"' \
	  --customize-hook='echo "nb-maint:x:$(IMAGE_UID):" >> "$$1/etc/group"' \
	  --customize-hook='echo "nb-maint:!:19000::::::" >> "$$1/etc/shadow"' \
	  --customize-hook='rm -f "$$1"/etc/nginx/sites-enabled/default; rm -rf "$$1"/var/cache/apt/archives/*.deb "$$1"/var/lib/apt/lists/*' \
	  bookworm $@.tmp $(IMAGE_SOURCES)
	mv $@.tmp $@

# the root file system plus our files (owned by root, the state and nginx's
# temporary directories by nb-maint), then the image's settings
$(IMAGE_ID): $(IMAGE_ROOTFS) $(MODULE_SO) $(STREAM_SO) $(IMAGE_FILES) mk/image.mk | image-deps
	rm -rf $(IMAGE_STAGE) && mkdir -p $(IMAGE_STAGE)
	$(MAKE) -s install-cli DESTDIR=$(CURDIR)/$(IMAGE_STAGE) PREFIX=/usr
	install -d $(IMAGE_STAGE)/usr/lib/nginx/modules $(IMAGE_STAGE)/etc/nginx/nb_maint \
	    $(IMAGE_STAGE)/etc/nb-maint $(IMAGE_STAGE)/usr/share/nb-maint $(IMAGE_STAGE)/usr/local/bin
	install -m 0644 $(MODULE_SO) $(STREAM_SO) $(IMAGE_STAGE)/usr/lib/nginx/modules/
	install -m 0644 static/nginx/*.conf $(IMAGE_STAGE)/etc/nginx/nb_maint/
	install -m 0644 static/page.html $(IMAGE_STAGE)/usr/share/nb-maint/
	install -m 0644 deploy/compose/nginx.conf $(IMAGE_STAGE)/etc/nb-maint/nginx.conf
	install -m 0755 deploy/image/* $(IMAGE_STAGE)/usr/local/bin/
	cp $(IMAGE_ROOTFS) $(IMAGE_DIR)/image.tar
	tar -rf $(IMAGE_DIR)/image.tar --owner=0 --group=0 --numeric-owner -C $(IMAGE_STAGE) ./usr ./etc
	install -d -m 0750 $(IMAGE_DIR)/own/var/lib/nb-maint $(IMAGE_DIR)/own/var/lib/nginx
	tar -rf $(IMAGE_DIR)/image.tar --owner=$(IMAGE_UID) --group=$(IMAGE_UID) --numeric-owner \
	    -C $(IMAGE_DIR)/own ./var/lib/nb-maint ./var/lib/nginx
	c=$$(buildah from --format docker scratch) && trap 'buildah rm $$c >/dev/null' EXIT && \
	buildah add $$c $(IMAGE_DIR)/image.tar / >/dev/null && \
	buildah config --user $(IMAGE_UID):$(IMAGE_UID) --workingdir /var/lib/nb-maint --port 8080 \
	  --entrypoint '["/usr/local/bin/nb-maint-gateway"]' --cmd '' --stop-signal SIGQUIT \
	  --env NB_MAINT_CONF=/etc/nb-maint/nginx.conf --env NB_MAINT_URL=http://127.0.0.1:8080/_nb_maint/ \
	  --volume /var/lib/nb-maint \
	  --healthcheck 'CMD /usr/local/bin/nb-maint-healthcheck' --healthcheck-interval 30s \
	  --healthcheck-timeout 5s --healthcheck-retries 3 --healthcheck-start-period 10s \
	  --label org.opencontainers.image.title=$(IMAGE_NAME) \
	  --label org.opencontainers.image.version=$(IMAGE_TAG) \
	  --label org.opencontainers.image.description="nginx (Debian 12) with nb_maint, NocoBase cluster maintenance" \
	  $$c && \
	buildah commit --quiet --format docker --rm $$c $(IMAGE_NAME):$(IMAGE_TAG) > $@.tmp && trap - EXIT
	buildah tag $(IMAGE_NAME):$(IMAGE_TAG) $(IMAGE_NAME):latest
	rm -f $(IMAGE_TAR) && podman save --quiet --format docker-archive -o $(IMAGE_TAR) \
	    localhost/$(IMAGE_NAME):$(IMAGE_TAG)
	rm -f $(IMAGE_DIR)/image.tar
	mv $@.tmp $@
	@echo "image: $(IMAGE_NAME):$(IMAGE_TAG) $$(cut -c1-12 $@), $(IMAGE_TAR)"

image-clean:
	rm -rf $(IMAGE_DIR)
	-buildah rmi $(IMAGE_NAME):$(IMAGE_TAG) $(IMAGE_NAME):latest 2>/dev/null
