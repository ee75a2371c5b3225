/*
 * nb_maint: admin tokens (SPEC section 5: "Authorization: Bearer").
 *
 * Owns: the nb_maint_admin_token_file directive (lines "name:token"; only
 * each token's SHA-256 is kept) and the Bearer check of every admin
 * request, each token compared in constant time.
 * May call: nginx and libcrypto.  Called by module.c (the directive) and
 * admin.c (the check).
 */

#include "ngx_http_nb_maint_admin.h"
#include <openssl/sha.h>
#include <openssl/crypto.h>


#define NB_TOKEN_FILE_MAX  (1024 * 1024)


/* the whole file into buf (temp pool) */

static char *
ngx_http_nb_maint_token_read(ngx_conf_t *cf, ngx_str_t *name, u_char **buf,
    ssize_t *n)
{
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"nb_maint_admin_token_file\": cannot open "
                           "\"%V\"", name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NB_TOKEN_FILE_MAX)
    {
        ngx_close_file(fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_admin_token_file\": \"%V\" is "
                           "unreadable or too large", name);
        return NGX_CONF_ERROR;
    }

    *buf = ngx_pnalloc(cf->temp_pool, ngx_file_size(&fi) + 1);
    if (*buf == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    *n = ngx_read_fd(fd, *buf, ngx_file_size(&fi));
    ngx_close_file(fd);

    if (*n < 0) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* one line [line, eol): blank, "# comment" or "name:token" */

static char *
ngx_http_nb_maint_token_line(ngx_conf_t *cf, ngx_array_t *tokens,
    ngx_str_t *name, u_char *line, u_char *eol, ngx_uint_t lineno)
{
    u_char                     *colon;
    ngx_str_t                   tok;
    ngx_http_nb_maint_token_t  *t;

    while (line < eol && (*line == ' ' || *line == '\t')) {
        line++;
    }

    tok.data = eol;
    while (tok.data > line && (tok.data[-1] == '\r' || tok.data[-1] == ' '
                               || tok.data[-1] == '\t'))
    {
        tok.data--;
    }

    if (line == tok.data || *line == '#') {
        return NGX_CONF_OK;
    }

    colon = ngx_strlchr(line, tok.data, ':');

    if (colon == NULL || colon == line || colon + 1 == tok.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_admin_token_file\": line %ui of "
                           "\"%V\" is not \"name:token\"", lineno, name);
        return NGX_CONF_ERROR;
    }

    t = ngx_array_push(tokens);
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->name.len = colon - line;
    t->name.data = ngx_pnalloc(cf->pool, t->name.len);
    if (t->name.data == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_memcpy(t->name.data, line, t->name.len);

    tok.len = tok.data - (colon + 1);
    tok.data = colon + 1;

    if (tok.len < 16) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"nb_maint_admin_token_file\": the token of "
                           "\"%V\" is short; use 16 characters or more",
                           &t->name);
    }

    SHA256(tok.data, tok.len, t->digest);

    return NGX_CONF_OK;
}


char *
ngx_http_nb_maint_token_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_loc_conf_t *nlcf = conf;

    u_char      *p, *end, *eol, *buf;
    char        *rv;
    ssize_t      n;
    ngx_str_t   *value, name;
    ngx_uint_t   lineno;

    if (nlcf->tokens != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_nb_maint_token_read(cf, &name, &buf, &n) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    nlcf->tokens = ngx_array_create(cf->pool, 4,
                                    sizeof(ngx_http_nb_maint_token_t));
    if (nlcf->tokens == NULL) {
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_OK;
    p = buf;
    end = buf + n;

    for (lineno = 1; p < end && rv == NGX_CONF_OK; lineno++, p = eol + 1) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        rv = ngx_http_nb_maint_token_line(cf, nlcf->tokens, &name, p, eol,
                                          lineno);
    }

    /* the plain tokens are not kept in memory */
    ngx_explicit_memzero(buf, n);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (nlcf->tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_admin_token_file\": no tokens in "
                           "\"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* authentication: every token compared, each in constant time */

ngx_http_nb_maint_token_t *
ngx_http_nb_maint_admin_auth(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf)
{
    u_char                      digest[SHA256_DIGEST_LENGTH];
    ngx_str_t                   v;
    ngx_uint_t                  i;
    ngx_http_nb_maint_token_t  *t, *found;

    if (nlcf->tokens == NULL || r->headers_in.authorization == NULL) {
        return NULL;
    }

    v = r->headers_in.authorization->value;

    if (v.len <= 7 || ngx_strncasecmp(v.data, (u_char *) "Bearer ", 7) != 0) {
        return NULL;
    }

    v.data += 7;
    v.len -= 7;

    while (v.len && v.data[0] == ' ') {
        v.data++;
        v.len--;
    }

    SHA256(v.data, v.len, digest);

    found = NULL;
    t = nlcf->tokens->elts;

    for (i = 0; i < nlcf->tokens->nelts; i++) {
        if (CRYPTO_memcmp(digest, t[i].digest, SHA256_DIGEST_LENGTH) == 0) {
            found = &t[i];
        }
    }

    return found;
}

