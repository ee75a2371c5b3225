/*
 * nb_maint: the bypass secret (SPEC section 6): the key that signs bypass
 * cookies, and the cookies it signs.
 *
 * The key is nb_maint_secret's, or a random one made at zone creation and
 * kept in the store, so that every gateway sharing the store accepts the
 * same cookie.  It lives in shared memory, published and read whole under
 * the state lock.  A cookie is "<expires>.<base64url HMAC-SHA256(key,
 * 'nb_maint:' + expires)>".
 *
 * May call: state.c (the zone), store_file_write.c (keeping the key in the
 * file).
 */

#include "ngx_http_nb_maint.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>


/*
 * The cookie key from the store: validated by the caller, published whole
 * under the state lock, so that no reader ever sees half a key.
 */

void
ngx_http_nb_maint_secret_publish(u_char *key)
{
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_publish_lock();

    ngx_memcpy(sh->secret, key, NB_SECRET_LEN);
    sh->secret_set = 1;

    ngx_http_nb_maint_publish_unlock();
}


void
ngx_http_nb_maint_secret_copy(u_char *out)
{
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_shm_read(out, sh->secret, NB_SECRET_LEN);
}


/* at zone creation (master): a random cookie key unless the store has one */

void
ngx_http_nb_maint_secret_init(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_log_t *log)
{
    if (sh->secret_set || ngx_test_config) {
        return;
    }

    if (RAND_bytes(sh->secret, NB_SECRET_LEN) != 1) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "nb_maint: cannot make a random cookie key");
        return;
    }

    sh->secret_set = 1;

    if (!sh->store_readonly
        && ngx_http_nb_maint_file_write(&nmcf->store, &sh->state, NULL, 1, log)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "nb_maint: cannot keep the cookie key in the store; "
                      "bypass cookies will not survive a restart");
    }
}


/* the key: nb_maint_secret's, else the store's */

static void
ngx_http_nb_maint_cookie_key(u_char *key)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);

    if (nmcf->secret_set) {
        ngx_memcpy(key, nmcf->secret, NB_SECRET_LEN);
        return;
    }

    /* the store's key may be replaced meanwhile: a consistent copy */
    ngx_http_nb_maint_secret_copy(key);
}


ngx_int_t
ngx_http_nb_maint_cookie_make(ngx_http_request_t *r, time_t expires,
    ngx_str_t *value)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, sizeof(NB_COOKIE_NAME "=.") + NGX_TIME_T_LEN
                             + NB_SIG_B64_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value->data = p;
    p = ngx_sprintf(p, NB_COOKIE_NAME "=%T", expires);
    *p = '.';

    ngx_http_nb_maint_cookie_sign(value->data + sizeof(NB_COOKIE_NAME),
                                  p - (value->data + sizeof(NB_COOKIE_NAME)),
                                  p + 1);

    value->len = p + 1 + NB_SIG_B64_LEN - value->data;

    return NGX_OK;
}


void
ngx_http_nb_maint_cookie_sign(u_char *exp, size_t len, u_char *out)
{
    u_char        md[EVP_MAX_MD_SIZE], msg[NGX_TIME_T_LEN + 16],
                  key[NB_SECRET_LEN];
    unsigned int  mdlen;
    ngx_str_t     src, dst;

    len = ngx_sprintf(msg, "nb_maint:%*s", len, exp) - msg;

    ngx_http_nb_maint_cookie_key(key);

    HMAC(EVP_sha256(), key, NB_SECRET_LEN, msg, len, md, &mdlen);

    ngx_explicit_memzero(key, NB_SECRET_LEN);

    src.data = md;
    src.len = mdlen;
    dst.data = out;

    ngx_encode_base64url(&dst, &src);
}

