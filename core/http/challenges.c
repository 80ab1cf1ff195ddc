/* challenges: pending ACME HTTP-01 tokens (see challenges.h). */
#include "http/challenges.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct challenge {
    struct challenge *next;
    char *token, *answer;
} challenge;

struct sp_challenges {
    uv_mutex_t lock;
    challenge *head;
};

sp_challenges *sp_challenges_new(void)
{
    sp_challenges *t = calloc(1, sizeof *t);
    if (t && uv_mutex_init(&t->lock) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

static void free_one(challenge *c)
{
    free(c->token);
    free(c->answer);
    free(c);
}

void sp_challenges_free(sp_challenges *t)
{
    if (!t)
        return;
    for (challenge *c = t->head, *n; c; c = n) {
        n = c->next;
        free_one(c);
    }
    uv_mutex_destroy(&t->lock);
    free(t);
}

int sp_challenges_put(sp_challenges *t, const char *token, const char *key_authorization)
{
    challenge *c = calloc(1, sizeof *c);
    if (!c || !(c->token = strdup(token)) || !(c->answer = strdup(key_authorization))) {
        if (c)
            free_one(c);
        return -1;
    }
    sp_challenges_remove(t, token);
    uv_mutex_lock(&t->lock);
    c->next = t->head;
    t->head = c;
    uv_mutex_unlock(&t->lock);
    return 0;
}

void sp_challenges_remove(sp_challenges *t, const char *token)
{
    uv_mutex_lock(&t->lock);
    for (challenge **pp = &t->head; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->token, token) == 0) {
            challenge *c = *pp;
            *pp = c->next;
            free_one(c);
            break;
        }
    uv_mutex_unlock(&t->lock);
}

bool sp_challenges_get(sp_challenges *t, const char *token, size_t len, char *out, size_t outlen)
{
    bool found = false;
    if (!t)
        return false;
    uv_mutex_lock(&t->lock);
    for (challenge *c = t->head; c; c = c->next)
        if (strlen(c->token) == len && memcmp(c->token, token, len) == 0) {
            size_t n = strlen(c->answer);
            if (n < outlen) {
                memcpy(out, c->answer, n + 1);
                found = true;
            }
            break;
        }
    uv_mutex_unlock(&t->lock);
    return found;
}
