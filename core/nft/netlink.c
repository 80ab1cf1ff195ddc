/* The nfnetlink batches of core/nft; see netlink.h. */
#include "nft/netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/if_arp.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MSG_ROOM 1536    /* bytes reserved per message: the largest rule is well below */

typedef enum { M_BEGIN, M_TABLE_ADD, M_TABLE_DEL, M_TABLE_NEW, M_CHAIN, M_COUNTER, M_LIMIT, M_RULE } mkind;

/* What a message of the batch was, to name it when the kernel refuses it. */
typedef struct mdesc {
    uint8_t kind, family;
    uint32_t ref;        /* chain, route or rule index */
} mdesc;

typedef struct batch {
    const sp_nft_ruleset *s;
    char *buf;
    struct mnl_nlmsg_batch *b;
    uint32_t seq0, seq;
    mdesc *d;
    size_t nd, dcap;
    bool overflow;
} batch;

static const struct { const char *type; uint32_t hook; int32_t prio; } chain_defs[SP_NFT_CHAINS] = {
    [SP_NFT_PREROUTING] = {"nat", NF_INET_PRE_ROUTING, -100},
    [SP_NFT_OUTPUT] = {"nat", NF_INET_LOCAL_OUT, -100},
    [SP_NFT_POSTROUTING] = {"nat", NF_INET_POST_ROUTING, 100},
    [SP_NFT_COUNT_IN] = {"filter", NF_INET_PRE_ROUTING, -90},
    [SP_NFT_COUNT_OUT] = {"filter", NF_INET_LOCAL_OUT, -90},
};

static uint16_t nf_family(int f)
{
    return f == SP_NFT_V6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
}

static struct nlmsghdr *next_hdr(batch *b, uint16_t type, int family, uint16_t flags, mkind kind, uint32_t ref)
{
    if (b->nd == b->dcap) {
        size_t cap = b->dcap ? b->dcap * 2 : 64;
        mdesc *d = realloc(b->d, cap * sizeof *d);
        if (!d) {
            b->overflow = true;
            return NULL;
        }
        b->d = d;
        b->dcap = cap;
    }
    b->d[b->nd++] = (mdesc){.kind = (uint8_t)kind, .family = (uint8_t)family, .ref = ref};
    return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(b->b), type, nf_family(family), flags, b->seq++);
}

static void done_msg(batch *b)
{
    if (!mnl_nlmsg_batch_next(b->b))
        b->overflow = true;
}

static void add_table(batch *b, int f, uint16_t type, uint16_t flags, mkind kind)
{
    struct nftnl_table *t = nftnl_table_alloc();
    if (!t) {
        b->overflow = true;
        return;
    }
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, nf_family(f));
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, SP_NFT_TABLE);
    struct nlmsghdr *nlh = next_hdr(b, type, f, flags | NLM_F_ACK, kind, 0);
    if (nlh) {
        nftnl_table_nlmsg_build_payload(nlh, t);
        done_msg(b);
    }
    nftnl_table_free(t);
}

static void add_chain(batch *b, int f, sp_nft_chain c)
{
    struct nftnl_chain *ch = nftnl_chain_alloc();
    if (!ch) {
        b->overflow = true;
        return;
    }
    nftnl_chain_set_u32(ch, NFTNL_CHAIN_FAMILY, nf_family(f));
    nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, SP_NFT_TABLE);
    nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, sp_nft_chain_name(c));
    nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, chain_defs[c].type);
    nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, chain_defs[c].hook);
    nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, chain_defs[c].prio);
    nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY, NF_ACCEPT);
    struct nlmsghdr *nlh = next_hdr(b, NFT_MSG_NEWCHAIN, f, NLM_F_CREATE | NLM_F_ACK, M_CHAIN, c);
    if (nlh) {
        nftnl_chain_nlmsg_build_payload(nlh, ch);
        done_msg(b);
    }
    nftnl_chain_free(ch);
}

static void add_objects(batch *b, int f, size_t ri)
{
    const sp_nft_route *r = &b->s->routes[ri];
    for (int limit = 0; limit < 2; limit++) {
        if (limit && !r->max_rate)
            break;
        struct nftnl_obj *o = nftnl_obj_alloc();
        if (!o) {
            b->overflow = true;
            return;
        }
        nftnl_obj_set_u32(o, NFTNL_OBJ_FAMILY, nf_family(f));
        nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, SP_NFT_TABLE);
        nftnl_obj_set_str(o, NFTNL_OBJ_NAME, limit ? r->limit : r->counter);
        if (limit) {
            nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_LIMIT);
            nftnl_obj_set_u64(o, NFTNL_OBJ_LIMIT_RATE, r->max_rate);
            nftnl_obj_set_u64(o, NFTNL_OBJ_LIMIT_UNIT, 1);
            nftnl_obj_set_u32(o, NFTNL_OBJ_LIMIT_BURST, 0);
            nftnl_obj_set_u32(o, NFTNL_OBJ_LIMIT_TYPE, NFT_LIMIT_PKT_BYTES);
            nftnl_obj_set_u32(o, NFTNL_OBJ_LIMIT_FLAGS, NFT_LIMIT_F_INV);
        } else {
            nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
            nftnl_obj_set_u64(o, NFTNL_OBJ_CTR_PKTS, r->packets);
            nftnl_obj_set_u64(o, NFTNL_OBJ_CTR_BYTES, r->bytes);
        }
        struct nlmsghdr *nlh = next_hdr(b, NFT_MSG_NEWOBJ, f, NLM_F_CREATE | NLM_F_ACK,
                                        limit ? M_LIMIT : M_COUNTER, (uint32_t)ri);
        if (nlh) {
            nftnl_obj_nlmsg_build_payload(nlh, o);
            done_msg(b);
        }
        nftnl_obj_free(o);
    }
}

/* ---- expressions ---- */

static void e_payload(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    nftnl_rule_add_expr(r, e);
}

static void e_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("cmp");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    nftnl_rule_add_expr(r, e);
}

static void e_bitwise(struct nftnl_rule *r, const void *mask, uint32_t len)
{
    static const uint8_t zero[16];
    struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
    nftnl_rule_add_expr(r, e);
}

static void e_meta(struct nftnl_rule *r, uint32_t key)
{
    struct nftnl_expr *e = nftnl_expr_alloc("meta");
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    nftnl_rule_add_expr(r, e);
}

static void e_ct(struct nftnl_rule *r, uint32_t key, int dir)
{
    struct nftnl_expr *e = nftnl_expr_alloc("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
    if (dir >= 0)
        nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, (uint8_t)dir);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    nftnl_rule_add_expr(r, e);
}

static void e_range(struct nftnl_rule *r, uint16_t from, uint16_t to)
{
    uint16_t a = htons(from), z = htons(to);
    if (from == to) {
        e_cmp(r, NFT_CMP_EQ, &a, 2);
    } else {
        e_cmp(r, NFT_CMP_GTE, &a, 2);
        e_cmp(r, NFT_CMP_LTE, &z, 2);
    }
}

static void e_imm_data(struct nftnl_rule *r, uint32_t reg, const void *data, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, reg);
    nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
    nftnl_rule_add_expr(r, e);
}

static void e_verdict(struct nftnl_rule *r, uint32_t verdict)
{
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, verdict);
    nftnl_rule_add_expr(r, e);
}

static void e_objref(struct nftnl_rule *r, uint32_t type, const char *name)
{
    struct nftnl_expr *e = nftnl_expr_alloc("objref");
    nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, type);
    nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, name);
    nftnl_rule_add_expr(r, e);
}

static void add_rule(batch *b, size_t ri)
{
    const sp_nft_rule *x = &b->s->rules[ri];
    const sp_nft_route *nr = &b->s->routes[x->route];
    int f = nr->family;
    bool v6 = f == SP_NFT_V6;
    uint32_t al = v6 ? 16 : 4;
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (!r) {
        b->overflow = true;
        return;
    }
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, nf_family(f));
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, SP_NFT_TABLE);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, sp_nft_chain_name(x->chain));

    if (x->not_loopback) {
        uint16_t lo = ARPHRD_LOOPBACK;
        e_meta(r, NFT_META_IIFTYPE);
        e_cmp(r, NFT_CMP_NEQ, &lo, 2);
    }
    if (x->fib_local) {
        struct nftnl_expr *e = nftnl_expr_alloc("fib");
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
        nftnl_rule_add_expr(r, e);
        uint32_t local = RTN_LOCAL;
        e_cmp(r, NFT_CMP_EQ, &local, 4);
    }
    if (x->ct_dnat) {
        uint32_t bit = IPS_DST_NAT, zero = 0;
        e_ct(r, NFT_CT_STATUS, -1);
        e_bitwise(r, &bit, 4);
        e_cmp(r, NFT_CMP_NEQ, &zero, 4);
    }
    bool counting = x->chain == SP_NFT_COUNT_IN || x->chain == SP_NFT_COUNT_OUT;
    if (counting) {
        e_ct(r, NFT_CT_PROTOCOL, IP_CT_DIR_ORIGINAL);
        e_cmp(r, NFT_CMP_EQ, &x->l4proto, 1);
        e_ct(r, NFT_CT_PROTO_DST, IP_CT_DIR_ORIGINAL);
        e_range(r, x->port_from, x->port_to);
    } else {
        e_meta(r, NFT_META_L4PROTO);
        e_cmp(r, NFT_CMP_EQ, &x->l4proto, 1);
    }
    if (x->daddr_target) {
        e_payload(r, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 24 : 16, al);
        e_cmp(r, NFT_CMP_EQ, nr->target, al);
    }
    if (!counting) {
        e_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
        e_range(r, x->port_from, x->port_to);
    }
    for (size_t i = 0; i < x->nsaddr; i++) {
        e_payload(r, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 8 : 12, al);
        e_bitwise(r, x->saddr[i].mask, al);
        e_cmp(r, NFT_CMP_EQ, x->saddr[i].value, al);
    }
    if (x->ct_reply_target) {
        e_ct(r, v6 ? NFT_CT_SRC_IP6 : NFT_CT_SRC_IP, IP_CT_DIR_REPLY);
        e_cmp(r, NFT_CMP_EQ, nr->target, al);
        if (nr->target_port) {
            uint16_t p = htons(nr->target_port);
            e_ct(r, NFT_CT_PROTO_SRC, IP_CT_DIR_REPLY);
            e_cmp(r, NFT_CMP_EQ, &p, 2);
        }
    }
    switch (x->action) {
    case SP_NFT_DNAT: {
        struct nftnl_expr *e = nftnl_expr_alloc("nat");
        e_imm_data(r, NFT_REG_1, nr->target, al);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, nf_family(f));
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MAX, NFT_REG_1);
        uint32_t flags = NF_NAT_RANGE_MAP_IPS;
        if (nr->target_port) {
            uint16_t p = htons(nr->target_port);
            e_imm_data(r, NFT_REG_2, &p, 2);
            nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
            nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MAX, NFT_REG_2);
            flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
        }
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS, flags);
        nftnl_rule_add_expr(r, e);
        break;
    }
    case SP_NFT_DROP:
        e_verdict(r, NF_DROP);
        break;
    case SP_NFT_MASQUERADE:
        nftnl_rule_add_expr(r, nftnl_expr_alloc("masq"));
        break;
    case SP_NFT_LIMIT_DROP:
        e_objref(r, NFT_OBJECT_LIMIT, nr->limit);
        e_verdict(r, NF_DROP);
        break;
    case SP_NFT_COUNT:
        e_objref(r, NFT_OBJECT_COUNTER, nr->counter);
        e_verdict(r, NF_ACCEPT);
        break;
    }
    struct nlmsghdr *nlh = next_hdr(b, NFT_MSG_NEWRULE, f, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
                                    M_RULE, (uint32_t)ri);
    if (nlh) {
        nftnl_rule_nlmsg_build_payload(nlh, r);
        done_msg(b);
    }
    nftnl_rule_free(r);
}

/* ---- talking to the kernel ---- */

static void describe_msg(const batch *b, uint32_t seq, char *out, size_t len)
{
    if (seq < b->seq0 || seq - b->seq0 >= b->nd) {
        snprintf(out, len, "applying the batch");
        return;
    }
    const mdesc *d = &b->d[seq - b->seq0];
    const char *fam = sp_nft_family_name((sp_nft_family)d->family);
    switch ((mkind)d->kind) {
    case M_BEGIN: snprintf(out, len, "the nftables batch"); break;
    case M_TABLE_ADD:
    case M_TABLE_NEW: snprintf(out, len, "creating table %s %s", fam, SP_NFT_TABLE); break;
    case M_TABLE_DEL: snprintf(out, len, "deleting table %s %s", fam, SP_NFT_TABLE); break;
    case M_CHAIN:
        snprintf(out, len, "creating chain %s %s %s", fam, SP_NFT_TABLE, sp_nft_chain_name((sp_nft_chain)d->ref));
        break;
    case M_COUNTER:
    case M_LIMIT: {
        const sp_nft_route *r = &b->s->routes[d->ref];
        snprintf(out, len, "creating the %s of route \"%s\" (#%d) in %s %s",
                 d->kind == M_LIMIT ? "max_rate limit" : "counter", r->name, r->index, fam, SP_NFT_TABLE);
        break;
    }
    case M_RULE: {
        const sp_nft_rule *x = &b->s->rules[d->ref];
        const sp_nft_route *r = &b->s->routes[x->route];
        char text[400];
        sp_nft_rule_format(b->s, x, text, sizeof text);
        snprintf(out, len, "adding a rule for route \"%s\" (#%d) to %s %s %s (%s)", r->name, r->index, fam,
                 SP_NFT_TABLE, sp_nft_chain_name(x->chain), text);
        break;
    }
    }
}

static const char *hint(int e)
{
    switch (e) {
    case EPERM: return " (kernel forwarding needs root or CAP_NET_ADMIN)";
    case EPROTONOSUPPORT:
    case EAFNOSUPPORT: return " (this kernel has no nf_tables netlink)";
    case EOPNOTSUPP: return " (this kernel lacks an nf_tables feature the rule needs: nf_nat, nft_fib, nft_ct, nft_limit?)";
    default: return "";
    }
}

static struct mnl_socket *open_socket(size_t sndbuf, size_t rcvbuf, char *err, size_t errlen)
{
    struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl) {
        int e = errno;
        snprintf(err, errlen, "cannot open an nfnetlink socket: %s%s", strerror(e), hint(e));
        return NULL;
    }
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot bind an nfnetlink socket: %s", strerror(e));
        mnl_socket_close(nl);
        return NULL;
    }
    int fd = mnl_socket_get_fd(nl);
    int one = 1;
    mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof one);
    mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof one);
    int v = (int)(sndbuf < (1u << 30) ? sndbuf : (1u << 30));
    if (v > 200000 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    v = (int)(rcvbuf < (1u << 30) ? rcvbuf : (1u << 30));
    if (v > 200000 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return nl;
}

/* The extended ack's message, if the kernel sent one. */
static const char *ext_msg(const struct nlmsghdr *nlh)
{
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
        return NULL;
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
    size_t off = sizeof *e;
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
        off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
    if (mnl_nlmsg_get_payload_len(nlh) <= off)
        return NULL;
    const struct nlattr *attr;
    mnl_attr_for_each_payload((void *)((const char *)e + off), mnl_nlmsg_get_payload_len(nlh) - off) {
        if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
            return mnl_attr_get_str(attr);
    }
    return NULL;
}

/* Sends the batch and reads every answer already queued (the kernel handles a batch
 * inside sendmsg). expected: the number of messages that asked for an ack. */
static int talk(batch *b, size_t expected, int *route, char *err, size_t errlen)
{
    size_t len = mnl_nlmsg_batch_size(b->b);
    struct mnl_socket *nl = open_socket(len + 4096, expected * 256 + 262144, err, errlen);
    if (!nl)
        return -1;
    int rc = 0;
    if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(b->b), len) < 0) {
        int e = errno;
        snprintf(err, errlen, "sending the nftables batch (%zu bytes): %s%s", len, strerror(e), hint(e));
        mnl_socket_close(nl);
        return -1;
    }
    size_t acks = 0;
    bool failed = false;
    char *buf = malloc(MNL_SOCKET_BUFFER_SIZE * 4);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        mnl_socket_close(nl);
        return -1;
    }
    uint32_t portid = mnl_socket_get_portid(nl);
    for (;;) {
        ssize_t n = recv(mnl_socket_get_fd(nl), buf, MNL_SOCKET_BUFFER_SIZE * 4, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && !failed) {
                int e = errno;
                snprintf(err, errlen, "reading the kernel's answer to the nftables batch: %s", strerror(e));
                failed = true;
            }
            break;
        }
        const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
        int left = (int)n;
        for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
            if (nlh->nlmsg_pid != portid || nlh->nlmsg_type != NLMSG_ERROR)
                continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
            acks++;
            if (e->error && !failed) {
                uint32_t i = nlh->nlmsg_seq - b->seq0;
                if (route && nlh->nlmsg_seq >= b->seq0 && i < b->nd)
                    *route = b->d[i].kind == M_RULE ? (int)b->s->rules[b->d[i].ref].route
                           : b->d[i].kind == M_COUNTER || b->d[i].kind == M_LIMIT ? (int)b->d[i].ref : -1;
                char what[600];
                describe_msg(b, nlh->nlmsg_seq, what, sizeof what);
                const char *m = ext_msg(nlh);
                snprintf(err, errlen, "%s: %s%s%s%s", what, strerror(-e->error), m ? " (" : "", m ? m : "",
                         m ? ")" : "");
                size_t l = strlen(err);
                if (l + 1 < errlen)
                    snprintf(err + l, errlen - l, "%s", hint(-e->error));
                failed = true;
            }
        }
    }
    free(buf);
    mnl_socket_close(nl);
    if (failed)
        rc = -1;
    else if (acks < expected) {
        snprintf(err, errlen, "the kernel answered %zu of the %zu messages of the nftables batch", acks, expected);
        rc = -1;
    }
    return rc;
}

static size_t count_messages(const sp_nft_ruleset *s)
{
    size_t n = 2 + 4;  /* begin, end, add+delete of both tables */
    for (int f = 0; f < 2; f++)
        n += s->has_family[f] ? 1 + SP_NFT_CHAINS : 0;
    for (size_t i = 0; i < s->nroutes; i++)
        n += s->routes[i].max_rate ? 2 : 1;
    return n + s->nrules;
}

int sp_nft_netlink_apply(const sp_nft_ruleset *s, bool commit, int *route, char *err, size_t errlen)
{
    if (route)
        *route = -1;
    size_t nmsg = count_messages(s);
    size_t limit = nmsg * MSG_ROOM + 4096;
    batch b = {.s = s, .buf = malloc(limit + MSG_ROOM)};
    if (!b.buf || !(b.b = mnl_nlmsg_batch_start(b.buf, limit))) {
        free(b.buf);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    b.seq0 = b.seq = (uint32_t)time(NULL);
    next_hdr(&b, 0, 0, 0, M_BEGIN, 0);
    nftnl_batch_begin(mnl_nlmsg_batch_current(b.b), b.seq0);
    done_msg(&b);
    for (int f = 0; f < 2; f++) {
        add_table(&b, f, NFT_MSG_NEWTABLE, NLM_F_CREATE, M_TABLE_ADD);
        add_table(&b, f, NFT_MSG_DELTABLE, 0, M_TABLE_DEL);
        if (!s->has_family[f])
            continue;
        add_table(&b, f, NFT_MSG_NEWTABLE, NLM_F_CREATE, M_TABLE_NEW);
        for (sp_nft_chain c = 0; c < SP_NFT_CHAINS; c++)
            add_chain(&b, f, c);
        for (size_t i = 0; i < s->nroutes; i++)
            if ((int)s->routes[i].family == f)
                add_objects(&b, f, i);
        for (size_t i = 0; i < s->nrules; i++)
            if ((int)s->routes[s->rules[i].route].family == f)
                add_rule(&b, i);
    }
    size_t expected = b.nd - 1;  /* every message but the batch start asked for an ack */
    if (commit) {
        nftnl_batch_end(mnl_nlmsg_batch_current(b.b), b.seq++);
        done_msg(&b);
    }
    int rc;
    if (b.overflow) {
        snprintf(err, errlen, "the nftables batch does not fit in memory");
        rc = -1;
    } else {
        rc = talk(&b, expected, route, err, errlen);
    }
    mnl_nlmsg_batch_stop(b.b);
    free(b.buf);
    free(b.d);
    return rc;
}

int sp_nft_netlink_remove(char *err, size_t errlen)
{
    sp_nft_ruleset empty = {0};
    return sp_nft_netlink_apply(&empty, true, NULL, err, errlen);
}

typedef struct dump_cx {
    void (*each)(void *, const char *, uint64_t, uint64_t);
    void *ud;
} dump_cx;

static int on_obj(const struct nlmsghdr *nlh, void *data)
{
    dump_cx *cx = data;
    struct nftnl_obj *o = nftnl_obj_alloc();
    if (!o)
        return MNL_CB_ERROR;
    if (nftnl_obj_nlmsg_parse(nlh, o) == 0 && nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE) == NFT_OBJECT_COUNTER &&
        strcmp(nftnl_obj_get_str(o, NFTNL_OBJ_TABLE), SP_NFT_TABLE) == 0)
        cx->each(cx->ud, nftnl_obj_get_str(o, NFTNL_OBJ_NAME), nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS),
                 nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES));
    nftnl_obj_free(o);
    return MNL_CB_OK;
}

int sp_nft_netlink_counters(sp_nft_family f, void (*each)(void *, const char *, uint64_t, uint64_t), void *ud,
                            char *err, size_t errlen)
{
    struct mnl_socket *nl = open_socket(0, 0, err, errlen);
    if (!nl)
        return -1;
    char *buf = malloc(MNL_SOCKET_BUFFER_SIZE);
    struct nftnl_obj *o = nftnl_obj_alloc();
    int rc = -1;
    if (!buf || !o) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    uint32_t seq = (uint32_t)time(NULL);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETOBJ, nf_family(f), NLM_F_DUMP, seq);
    nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, SP_NFT_TABLE);
    nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
    nftnl_obj_nlmsg_build_payload(nlh, o);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        int e = errno;
        snprintf(err, errlen, "asking for the nftables counters: %s%s", strerror(e), hint(e));
        goto out;
    }
    dump_cx cx = {.each = each, .ud = ud};
    uint32_t portid = mnl_socket_get_portid(nl);
    for (int rounds = 0; rounds < 100000; rounds++) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, MNL_SOCKET_BUFFER_SIZE);
        if (n < 0) {
            int e = errno;
            snprintf(err, errlen, "reading the nftables counters: %s", strerror(e));
            goto out;
        }
        int r = mnl_cb_run(buf, (size_t)n, seq, portid, on_obj, &cx);
        if (r == MNL_CB_STOP) {
            rc = 0;
            break;
        }
        if (r < 0) {
            int e = errno;
            if (e == ENOENT) { /* no table */
                rc = 0;
                break;
            }
            snprintf(err, errlen, "reading the nftables counters: %s%s", strerror(e), hint(e));
            goto out;
        }
    }
out:
    if (o)
        nftnl_obj_free(o);
    free(buf);
    mnl_socket_close(nl);
    return rc;
}
