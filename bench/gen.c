/*
 * gen.c - chatroom's benchmark load generator (single thread, epoll, loopback only).
 *
 * Driven by bench/generator.py: one command per line on stdin, one JSON object per
 * line on stdout. It knows nothing of the protocols' setup: Python precomputes every
 * handshake and setup frame (login, join...) in a plan file, and the publish frame as
 * a template (prefix + fixed-size payload + suffix). gen.c only
 *   - opens connections in batches, sends the setup frames one by one, each awaiting
 *     the reply whose `i` it names (mode lc) or the Socket.IO "40" (mode sio);
 *   - publishes open loop at R msg/s (or closed loop with a window of unacked
 *     messages per publisher), each payload "p|step|pub|seq|send_ns|xxx...";
 *   - parses every received frame just enough to find that payload (text frame for
 *     raw, 42["msg","..."] for sio, GenericCommand.directMessage.msg for lc) and acks
 *     (lc), and keeps latency histograms per priority and for acks.
 *
 * Commands:
 *   connect PLANFILE      -> {"ev":"connected",...}
 *   template PRIO PREFIX_HEX SUFFIX_HEX ITAIL   (ITAIL 1: append GenericCommand.i)
 *   size BYTES
 *   step ID RATE SECS WINDOW PCT_HIGH PCT_NORMAL QUIET_S MAX_DRAIN_S -> {"ev":"step",...}
 *   reply IDX             -> {"ev":"reply","hex":...} the last setup reply of IDX
 *   pause IDX             stop reading IDX (a slow viewer)
 *   close                 close every connection (RST) -> {"ev":"ok","closed":N}
 *   poll SECS             keep servicing sockets for SECS
 *   spin 0|1              1: a step polls epoll without ever sleeping in it (the server's
 *                         writes then never pay for waking this process)
 *   quit
 * Plan file: "mode raw|sio|lc", "handshake HEX", then one line per connection:
 *   "conn ROLE N HEX1 I1 ... HEXN IN"   (ROLE 0 viewer, 1 publisher, 2 idle, 3 slow viewer:
 *   a 4 KiB receive buffer, and to be paused). Optional lines before the first conn:
 *   "batch N" (open N connections, then wait until they are set up before opening more;
 *   default 100, 0 opens them all at once: a flash crowd) and "deadline SECS" (give up on
 *   connections not set up after SECS per batch; default 30), and "port N" (this plan's
 *   connections go to port N instead of the command line's: viewers over the nodes of a
 *   cluster). A step reports received counts and latency for each port too ("by_port").
 * Connects are non-blocking: a server whose accept queue is full makes the kernel retry
 * the SYN (after 1 s, then 3 s...), and that time counts, as it would for a real client.
 * "connected" reports why connections failed (refused: connect error, HTTP status other
 * than 101, or an error reply to a setup frame; dropped: closed by the server before or
 * after setup; timed_out: not set up by the deadline) and the time each took to be set up
 * (ready_p50/p99/max, seconds from the command).
 * Build: gcc -O2 -o gen gen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF 65536
#define RING 65536
#define FIRST_MSG_I 1000
#define MAXCONN 65536
#define STDIN_TAG 0xffffffffu
#define MAX_PAYLOAD 8192

enum { M_RAW, M_SIO, M_LC };
enum { ST_CONNECTING, ST_HTTP, ST_SIO_OPEN, ST_SETUP, ST_READY, ST_DEAD = -1 };
/* why a connection failed (conn_t.fail) */
enum { F_NONE, F_CONNECT, F_HTTP, F_SETUP, F_CLOSED, F_LOST, F_TIMEOUT };

typedef struct { unsigned char *d; uint32_t n; int32_t i; } frame_t;

typedef struct {
  int fd, role, state, mode, paused, fail;
  int port, group; /* the server port, and its index in ports[] */
  uint32_t idx;
  int64_t ready_ns;
  unsigned char *rbuf; uint32_t rlen;
  unsigned char *obuf; uint32_t olen, ocap;
  frame_t *setup; int nsetup, setup_pos;
  unsigned char *reply; uint32_t reply_n;
  int32_t next_i; int inflight; uint64_t seq;
  int64_t *ring; /* send time by i & (RING-1), publishers only */
} conn_t;

static conn_t *conns;
static uint32_t nconns;
static int epfd, port = 0, payload_size = 100, spin = 0;
#define MAXPORTS 8
static int ports[MAXPORTS], nports; /* every port connected to, in first-use order */
static char first_error[512];

/* ---------- time, histograms ---------- */
static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#define FINE 10000   /* 10 us buckets up to 100 ms */
#define COARSE 120000 /* then 1 ms buckets up to 120 s */
typedef struct { uint32_t fine[FINE], coarse[COARSE + 1]; uint64_t n; double sum, max; } hist_t;
enum { H_ALL, H_HIGH, H_NORMAL, H_LOW, H_ACK, NHIST };
static hist_t hist[NHIST], port_hist[MAXPORTS];

static void h_add(hist_t *h, double ms) {
  if (ms < 0) ms = 0;
  h->n++; h->sum += ms;
  if (ms > h->max) h->max = ms;
  if (ms < 100) h->fine[(int)(ms * 100)]++;
  else { int k = (int)ms; h->coarse[k > COARSE ? COARSE : k]++; }
}
static double h_pct(const hist_t *h, double p) {
  if (!h->n) return -1;
  uint64_t target = (uint64_t)(h->n * p + 0.999999), c = 0;
  if (target < 1) target = 1;
  for (int k = 0; k < FINE; k++) if ((c += h->fine[k]) >= target) return (k + 1) / 100.0;
  for (int k = 100; k <= COARSE; k++) if ((c += h->coarse[k]) >= target) return k + 1 < h->max ? k + 1 : h->max;
  return h->max;
}

/* ---------- step counters ---------- */
static int cur_step = -1;
static uint64_t sent[4], received[4], port_received[MAXPORTS], strays, pub_rx, acks, ack_errors, errors, closed, skipped;
static int64_t first_send_ns, last_rx_ns, last_any_rx_ns;

/* ---------- output ---------- */
static void tohex(char *out, const unsigned char *d, uint32_t n) {
  static const char *x = "0123456789abcdef";
  for (uint32_t k = 0; k < n; k++) { out[2 * k] = x[d[k] >> 4]; out[2 * k + 1] = x[d[k] & 15]; }
  out[2 * n] = 0;
}
static void note_error(const char *what, const unsigned char *d, uint32_t n) {
  if (first_error[0]) return;
  if (n > 200) n = 200;
  int k = snprintf(first_error, sizeof first_error, "%s:", what);
  tohex(first_error + k, d, n);
}
static int unhex(const char *s, unsigned char **out) {
  size_t n = strlen(s) / 2;
  *out = malloc(n + 1);
  for (size_t k = 0; k < n; k++) { unsigned v; sscanf(s + 2 * k, "%2x", &v); (*out)[k] = (unsigned char)v; }
  return (int)n;
}

/* ---------- sockets ---------- */
static void kill_conn(conn_t *c, int counted) {
  if (c->state == ST_DEAD) return;
  if (counted && c->state == ST_READY) closed++;
  if (!c->fail) c->fail = c->state == ST_READY ? F_LOST : F_CLOSED;
  c->state = ST_DEAD;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  struct linger lg = {1, 0}; /* RST: no TIME_WAIT pile-up across runs */
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(c->fd);
}
static void want_out(conn_t *c, int on) {
  if (c->paused) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = c->idx};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}
static void conn_write(conn_t *c, const unsigned char *d, uint32_t n) {
  if (c->state == ST_DEAD) return;
  if (c->olen == 0 && c->state != ST_CONNECTING) {
    ssize_t w = send(c->fd, d, n, MSG_NOSIGNAL);
    if (w == (ssize_t)n) return;
    if (w < 0) { if (errno != EAGAIN) { kill_conn(c, 1); return; } w = 0; }
    d += w; n -= (uint32_t)w;
    want_out(c, 1);
  }
  if (c->olen + n > c->ocap) {
    uint32_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + n) cap *= 2;
    c->obuf = realloc(c->obuf, cap); c->ocap = cap;
  }
  memcpy(c->obuf + c->olen, d, n); c->olen += n;
}
static void conn_flush(conn_t *c) {
  if (!c->olen) return;
  ssize_t w = send(c->fd, c->obuf, c->olen, MSG_NOSIGNAL);
  if (w < 0) { if (errno != EAGAIN) kill_conn(c, 1); return; }
  memmove(c->obuf, c->obuf + w, c->olen - (uint32_t)w);
  c->olen -= (uint32_t)w;
  if (!c->olen) want_out(c, 0);
}
static uint32_t rng = 2463534242u;
static void send_frame(conn_t *c, int opcode, const unsigned char *p, uint32_t n) {
  unsigned char stack[14 + 1024], *buf = n + 14 > sizeof stack ? malloc(n + 14) : stack;
  uint32_t h = 0;
  buf[h++] = 0x80 | (unsigned char)opcode;
  if (n < 126) buf[h++] = 0x80 | (unsigned char)n;
  else { buf[h++] = 0x80 | 126; buf[h++] = (unsigned char)(n >> 8); buf[h++] = (unsigned char)n; }
  rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5;
  unsigned char *mk = buf + h;
  memcpy(mk, &rng, 4); h += 4;
  for (uint32_t k = 0; k < n; k++) buf[h + k] = p[k] ^ mk[k & 3];
  conn_write(c, buf, h + n);
  if (buf != stack) free(buf);
}
static int data_opcode(const conn_t *c) { return c->mode == M_LC ? 2 : 1; }

/* ---------- payloads ---------- */
/* "p|step|pub|seq|send_ns|" padded with x to payload_size */
static void on_payload(conn_t *c, const unsigned char *p, uint32_t n) {
  int64_t now = now_ns();
  last_any_rx_ns = now;
  if (c->role != 0) { pub_rx++; return; }
  if (n < 43 || p[1] != '|') { strays++; return; }
  int prio = p[0] - '0';
  long step = 0; int64_t ts = 0;
  for (int k = 2; k < 6; k++) step = step * 10 + (p[k] - '0');
  for (int k = 22; k < 42; k++) ts = ts * 10 + (p[k] - '0');
  if (step != cur_step || prio < 1 || prio > 3) { strays++; return; }
  received[prio]++;
  port_received[c->group]++;
  last_rx_ns = now;
  double ms = (now - ts) / 1e6;
  h_add(&hist[H_ALL], ms);
  h_add(&hist[prio], ms);
  h_add(&port_hist[c->group], ms);
}

/* ---------- protobuf (lc mode): just the fields we need ---------- */
static int pb_varint(const unsigned char **p, const unsigned char *e, uint64_t *v) {
  uint64_t r = 0; int s = 0;
  while (*p < e && s < 64) { unsigned char b = *(*p)++; r |= (uint64_t)(b & 0x7f) << s; s += 7; if (!(b & 0x80)) { *v = r; return 0; } }
  return -1;
}
typedef struct { int64_t cmd, i; const unsigned char *msg; uint32_t msg_n; int has_ack, ack_code, has_err; } lcmsg_t;
static int pb_skip(const unsigned char **p, const unsigned char *e, int wt, const unsigned char **sub, uint32_t *subn) {
  uint64_t v;
  switch (wt) {
    case 0: return pb_varint(p, e, &v);
    case 1: if (e - *p < 8) return -1; *p += 8; return 0;
    case 5: if (e - *p < 4) return -1; *p += 4; return 0;
    case 2: if (pb_varint(p, e, &v) || (uint64_t)(e - *p) < v) return -1; *sub = *p; *subn = (uint32_t)v; *p += v; return 0;
    default: return -1;
  }
}
static int lc_parse(const unsigned char *p, uint32_t n, lcmsg_t *m) {
  const unsigned char *e = p + n, *sub = NULL; uint32_t subn = 0;
  memset(m, 0, sizeof *m); m->cmd = -1; m->i = -1;
  while (p < e) {
    uint64_t tag, v;
    if (pb_varint(&p, e, &tag)) return -1;
    int f = (int)(tag >> 3), wt = (int)(tag & 7);
    if (wt == 0 && (f == 1 || f == 5)) { if (pb_varint(&p, e, &v)) return -1; if (f == 1) m->cmd = (int64_t)v; else m->i = (int64_t)(int32_t)v; continue; }
    if (pb_skip(&p, e, wt, &sub, &subn)) return -1;
    if (wt != 2) continue;
    if (f == 103) m->has_err = 1;
    if (f == 104 || f == 105) { /* directMessage.msg (1) / ackMessage.code (1) */
      const unsigned char *q = sub, *qe = sub + subn, *s2 = NULL; uint32_t s2n = 0;
      if (f == 105) m->has_ack = 1;
      while (q < qe) {
        uint64_t t2;
        if (pb_varint(&q, qe, &t2)) return -1;
        if ((t2 >> 3) == 1 && f == 105 && (t2 & 7) == 0) { uint64_t code; if (pb_varint(&q, qe, &code)) return -1; m->ack_code = 1; continue; }
        if (pb_skip(&q, qe, (int)(t2 & 7), &s2, &s2n)) return -1;
        if ((t2 >> 3) == 1 && f == 104 && (t2 & 7) == 2) { m->msg = s2; m->msg_n = s2n; }
      }
    }
  }
  return 0;
}
static void setup_next(conn_t *c);
static void connected(conn_t *c);
static void on_lc(conn_t *c, const unsigned char *p, uint32_t n) {
  lcmsg_t m;
  if (lc_parse(p, n, &m)) { errors++; note_error("undecodable", p, n); return; }
  int failed = m.cmd == 7 || m.has_err || m.ack_code;
  if (c->state == ST_SETUP && m.i == c->setup[c->setup_pos].i) {
    if (failed) { note_error("setup reply", p, n); c->fail = F_SETUP; kill_conn(c, 0); return; }
    free(c->reply); c->reply = malloc(n); memcpy(c->reply, p, n); c->reply_n = n;
    c->setup_pos++;
    setup_next(c);
    return;
  }
  if (m.cmd == 3 && m.i >= FIRST_MSG_I && c->ring) {
    int64_t ts = c->ring[m.i & (RING - 1)];
    if (c->inflight > 0) c->inflight--;
    if (m.ack_code) { ack_errors++; note_error("ack", p, n); return; }
    acks++;
    if (ts) h_add(&hist[H_ACK], (now_ns() - ts) / 1e6);
    return;
  }
  if (failed) { errors++; note_error("error", p, n); return; }
  if (m.msg) on_payload(c, m.msg, m.msg_n);
}
static void on_sio(conn_t *c, const unsigned char *p, uint32_t n) {
  if (n == 1 && p[0] == '2') { send_frame(c, 1, (const unsigned char *)"3", 1); return; }
  if (c->state == ST_SIO_OPEN) {
    if (n >= 1 && p[0] == '0') send_frame(c, 1, (const unsigned char *)"40", 2);
    else if (n >= 2 && p[0] == '4' && p[1] == '0') setup_next(c);
    return;
  }
  if (n > 12 && !memcmp(p, "42[\"msg\",\"", 10)) on_payload(c, p + 10, n - 12);
}
static void on_message(conn_t *c, const unsigned char *p, uint32_t n) {
  if (c->mode == M_LC) on_lc(c, p, n);
  else if (c->mode == M_SIO) on_sio(c, p, n);
  else on_payload(c, p, n);
}

/* ---------- setup ---------- */
static void setup_next(conn_t *c) {
  if (c->setup_pos < c->nsetup) {
    c->state = ST_SETUP;
    send_frame(c, data_opcode(c), c->setup[c->setup_pos].d, c->setup[c->setup_pos].n);
    return;
  }
  c->state = ST_READY;
  c->ready_ns = now_ns();
  for (int k = 0; k < c->nsetup; k++) free(c->setup[k].d);
  free(c->setup); c->setup = NULL; c->nsetup = 0;
}

static void handle_read(conn_t *c) {
  for (int iter = 0; iter < 16 && c->state != ST_DEAD; iter++) {
    ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN)) { kill_conn(c, 1); return; }
    if (r < 0) return;
    c->rlen += (uint32_t)r;
    uint32_t off = 0;
    if (c->state == ST_HTTP) {
      unsigned char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
      if (!end) { if (c->rlen == RBUF) kill_conn(c, 0); continue; }
      if (memcmp(c->rbuf, "HTTP/1.1 101", 12)) { note_error("http", c->rbuf, (uint32_t)(end - c->rbuf)); c->fail = F_HTTP; kill_conn(c, 0); return; }
      off = (uint32_t)(end + 4 - c->rbuf);
      if (c->mode == M_SIO) c->state = ST_SIO_OPEN; else setup_next(c);
    }
    while (c->state != ST_DEAD && c->rlen - off >= 2) {
      unsigned char *f = c->rbuf + off;
      int op = f[0] & 15;
      uint64_t len = f[1] & 127; uint32_t h = 2;
      if (len == 126) { if (c->rlen - off < 4) break; len = ((uint64_t)f[2] << 8) | f[3]; h = 4; }
      else if (len == 127) { if (c->rlen - off < 10) break; len = 0; for (int k = 0; k < 8; k++) len = len << 8 | f[2 + k]; h = 10; }
      if (f[1] & 128) h += 4;
      if (len > RBUF - 16) { note_error("oversized frame", f, 16); kill_conn(c, 1); return; }
      if (c->rlen - off < h + len) break;
      if (op <= 2) on_message(c, f + h, (uint32_t)len);
      else if (op == 9) send_frame(c, 10, f + h, (uint32_t)len);
      else if (op == 8) { note_error("close frame", f + h, (uint32_t)len); kill_conn(c, 1); return; }
      off += h + (uint32_t)len;
    }
    if (c->state == ST_DEAD) return;
    if (off) { memmove(c->rbuf, c->rbuf + off, c->rlen - off); c->rlen -= off; }
    if ((size_t)r < RBUF / 2) return; /* drained the socket */
  }
}

/* ---------- stdin commands ---------- */
static char line[1 << 20]; static size_t line_len; static int line_ready;
static void read_stdin(void) {
  if (line_ready) return;
  ssize_t r = read(0, line + line_len, sizeof line - 1 - line_len);
  if (r <= 0) { if (r == 0) exit(0); return; }
  line_len += (size_t)r;
  if (memchr(line, '\n', line_len)) line_ready = 1;
}
static void poll_once(int timeout_ms) {
  struct epoll_event evs[512];
  int n = epoll_wait(epfd, evs, 512, timeout_ms);
  for (int k = 0; k < n; k++) {
    if (evs[k].data.u32 == STDIN_TAG) { read_stdin(); continue; }
    conn_t *c = &conns[evs[k].data.u32];
    if (c->state == ST_DEAD) continue;
    if (c->state == ST_CONNECTING) { connected(c); continue; }
    if (evs[k].events & EPOLLOUT) conn_flush(c);
    if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) handle_read(c);
  }
}
static void poll_for(double secs) { int64_t end = now_ns() + (int64_t)(secs * 1e9); while (now_ns() < end) poll_once(5); }

static void connect_error(conn_t *c, int err) {
  const char *why = strerror(err);
  note_error("connect", (const unsigned char *)why, (uint32_t)strlen(why));
  c->fail = F_CONNECT;
}
/* the non-blocking connect ended (writable, or an error): send the handshake */
static void connected(conn_t *c) {
  int err = 0; socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) { connect_error(c, err); kill_conn(c, 0); return; }
  c->state = ST_HTTP;
  if (c->olen) conn_flush(c); else want_out(c, 0);
}
static int open_conn(conn_t *c, const unsigned char *hs, uint32_t hsn) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) { connect_error(c, errno); return -1; }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (c->role == 3) { int small = 4096; setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small); }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) { connect_error(c, errno); close(c->fd); return -1; }
  c->rbuf = malloc(RBUF);
  c->state = ST_CONNECTING;
  conn_write(c, hs, hsn); /* buffered until connected() */
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = c->idx};
  epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
  return 0;
}

/* service sockets until connections [from, nconns) are set up or dead, or the deadline */
static void await_setup(uint32_t from, double deadline_s) {
  int64_t ddl = now_ns() + (int64_t)(deadline_s * 1e9);
  for (;;) {
    int pending = 0;
    for (uint32_t k = from; k < nconns; k++) pending += conns[k].state != ST_DEAD && conns[k].state != ST_READY;
    if (!pending || now_ns() > ddl) return;
    poll_once(5);
  }
}
static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void cmd_connect(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) { printf("{\"ev\":\"error\",\"what\":\"cannot open plan\"}\n"); return; }
  static char buf[1 << 16];
  int mode = M_RAW; unsigned char *hs = NULL; int hsn = 0, batch = 100, plan_port = port;
  double deadline_s = 30.0;
  uint32_t first = nconns, ok = 0, failed = 0, batch_start = nconns, fails[F_TIMEOUT + 1] = {0};
  int64_t t0 = now_ns();
  first_error[0] = 0;
  while (fgets(buf, sizeof buf, f)) {
    char *tok = strtok(buf, " \n");
    if (!tok) continue;
    if (!strcmp(tok, "mode")) { tok = strtok(NULL, " \n"); mode = !strcmp(tok, "sio") ? M_SIO : !strcmp(tok, "lc") ? M_LC : M_RAW; continue; }
    if (!strcmp(tok, "handshake")) { hsn = unhex(strtok(NULL, " \n"), &hs); continue; }
    if (!strcmp(tok, "batch")) { batch = atoi(strtok(NULL, " \n")); continue; }
    if (!strcmp(tok, "deadline")) { deadline_s = atof(strtok(NULL, " \n")); continue; }
    if (!strcmp(tok, "port")) { plan_port = atoi(strtok(NULL, " \n")); continue; }
    if (strcmp(tok, "conn") || nconns >= MAXCONN) continue;
    conn_t *c = &conns[nconns];
    memset(c, 0, sizeof *c);
    c->idx = nconns++; c->mode = mode; c->port = plan_port;
    for (c->group = 0; c->group < nports && ports[c->group] != plan_port; c->group++) {}
    if (c->group == nports) { if (nports < MAXPORTS) ports[nports++] = plan_port; else c->group = 0; }
    c->role = atoi(strtok(NULL, " \n"));
    c->nsetup = atoi(strtok(NULL, " \n"));
    c->setup = calloc((size_t)c->nsetup + 1, sizeof(frame_t));
    for (int k = 0; k < c->nsetup; k++) {
      c->setup[k].n = (uint32_t)unhex(strtok(NULL, " \n"), &c->setup[k].d);
      c->setup[k].i = atoi(strtok(NULL, " \n"));
    }
    c->next_i = FIRST_MSG_I;
    if (c->role == 1) c->ring = calloc(RING, sizeof(int64_t));
    if (open_conn(c, hs, (uint32_t)hsn)) { c->state = ST_DEAD; }
    if (batch > 0 && nconns - batch_start >= (uint32_t)batch) { /* wait for this batch before opening more */
      await_setup(batch_start, deadline_s);
      batch_start = nconns;
    } else if (batch <= 0 && (nconns - first) % 64 == 0) {
      poll_once(0); /* a crowd: answer the server while still opening */
    }
  }
  fclose(f);
  await_setup(batch_start, deadline_s);
  int64_t t1 = now_ns(), *ready = malloc(sizeof(int64_t) * (nconns - first + 1));
  for (uint32_t k = first; k < nconns; k++) {
    conn_t *c = &conns[k];
    if (c->state == ST_READY) { ready[ok++] = c->ready_ns - t0; continue; }
    failed++;
    if (c->state != ST_DEAD) { c->fail = F_TIMEOUT; kill_conn(c, 0); }
    fails[c->fail]++;
  }
  qsort(ready, ok, sizeof *ready, cmp_i64);
  double p50 = ok ? ready[(ok - 1) / 2] / 1e9 : -1, p99 = ok ? ready[(uint32_t)((ok - 1) * 0.99)] / 1e9 : -1, top = ok ? ready[ok - 1] / 1e9 : -1;
  free(ready); free(hs);
  printf("{\"ev\":\"connected\",\"first\":%u,\"count\":%u,\"ok\":%u,\"failed\":%u,\"secs\":%.3f,\"first_error\":\"%s\","
         "\"refused\":%u,\"dropped\":%u,\"timed_out\":%u,\"ready_p50\":%.3f,\"ready_p99\":%.3f,\"ready_max\":%.3f}\n",
         first, nconns - first, ok, failed, (t1 - t0) / 1e9, first_error, fails[F_CONNECT] + fails[F_HTTP] + fails[F_SETUP],
         fails[F_CLOSED] + fails[F_LOST], fails[F_TIMEOUT], p50, p99, top);
}

/* ---------- publishing ---------- */
typedef struct { unsigned char *pre, *suf; int npre, nsuf, itail; } tmpl_t;
static tmpl_t tmpl[4];

static int pick_prio(uint64_t k, int pct_high, int pct_normal) {
  int slot = (int)((k * 37) % 100); /* 37 is prime to 100: the classes interleave evenly */
  return slot < pct_high ? 1 : slot < pct_high + pct_normal ? 2 : 3;
}
static void publish(conn_t *c, int pub_index, int prio) {
  tmpl_t *t = &tmpl[prio];
  static unsigned char buf[MAX_PAYLOAD + 4096]; /* payload + template + i */
  uint32_t n = 0;
  memcpy(buf, t->pre, (size_t)t->npre); n += (uint32_t)t->npre;
  int64_t ts = now_ns();
  char body[64];
  int bn = snprintf(body, sizeof body, "%d|%04d|%03d|%010llu|%020lld|", prio, cur_step % 10000, pub_index % 1000,
                    (unsigned long long)(c->seq++ % 10000000000ULL), (long long)ts);
  memcpy(buf + n, body, (size_t)bn);
  memset(buf + n + bn, 'x', (size_t)(payload_size - bn));
  n += (uint32_t)payload_size;
  memcpy(buf + n, t->suf, (size_t)t->nsuf); n += (uint32_t)t->nsuf;
  if (t->itail) {
    uint32_t i = (uint32_t)c->next_i++;
    c->ring[i & (RING - 1)] = ts;
    buf[n++] = 0x28; /* GenericCommand.i, field 5, varint */
    while (i >= 0x80) { buf[n++] = (unsigned char)(i | 0x80); i >>= 7; }
    buf[n++] = (unsigned char)i;
  }
  c->inflight++;
  sent[prio]++;
  if (!first_send_ns) first_send_ns = ts;
  send_frame(c, data_opcode(c), buf, n);
}

static void hist_json(const char *name, const hist_t *h, int comma) {
  printf("%s\"%s\":{\"n\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f}", comma ? "," : "",
         name, (unsigned long long)h->n, h_pct(h, .5), h_pct(h, .9), h_pct(h, .99), h_pct(h, .999), h->max, h->n ? h->sum / h->n : -1);
}
static double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void cmd_step(int id, double rate, double secs, int window, int pct_high, int pct_normal, double quiet, double max_drain) {
  cur_step = id;
  memset(hist, 0, sizeof hist);
  memset(sent, 0, sizeof sent); memset(received, 0, sizeof received);
  memset(port_hist, 0, sizeof port_hist); memset(port_received, 0, sizeof port_received);
  strays = pub_rx = acks = ack_errors = errors = closed = skipped = 0;
  first_send_ns = last_rx_ns = 0;
  first_error[0] = 0;
  uint32_t pubs[1024], npub = 0, nsub = 0, port_subs[MAXPORTS] = {0};
  for (uint32_t k = 0; k < nconns; k++) {
    if (conns[k].state != ST_READY) continue;
    if (conns[k].role == 1 && npub < 1024) { pubs[npub++] = k; conns[k].inflight = 0; }
    if (conns[k].role == 0 && !conns[k].paused) { nsub++; port_subs[conns[k].group]++; }
  }
  double cpu0 = self_cpu();
  int64_t t0 = now_ns(), tend = t0 + (int64_t)(secs * 1e9);
  uint64_t total = 0, rr = 0;
  while (npub) {
    int64_t now = now_ns();
    if (now >= tend) break;
    if (window > 0) {
      for (uint32_t k = 0; k < npub; k++) {
        conn_t *c = &conns[pubs[k]];
        while (c->state == ST_READY && c->inflight < window) publish(c, (int)k, pick_prio(total++, pct_high, pct_normal));
      }
    } else {
      int64_t due = (int64_t)((now - t0) / 1e9 * rate) - (int64_t)total;
      for (int64_t k = 0; k < due; k++, total++) {
        uint32_t p = (uint32_t)(rr++ % npub);
        conn_t *c = &conns[pubs[p]];
        if (c->state != ST_READY || c->olen > (1u << 20)) { skipped++; continue; }
        publish(c, (int)p, pick_prio(total, pct_high, pct_normal));
      }
    }
    poll_once(spin ? 0 : 1);
  }
  int64_t tsend = now_ns();
  uint64_t nsent = sent[1] + sent[2] + sent[3], expected = nsent * nsub;
  int tails = tmpl[1].itail;
  int64_t ddl = tsend + (int64_t)(max_drain * 1e9);
  int drained = 0;
  last_any_rx_ns = tsend;
  while (now_ns() < ddl) {
    uint64_t got = received[1] + received[2] + received[3];
    if (got >= expected && (!tails || acks + ack_errors >= nsent)) { drained = 1; break; }
    if (now_ns() - last_any_rx_ns > (int64_t)(quiet * 1e9)) break;
    poll_once(spin ? 0 : 5);
  }
  int64_t tend2 = now_ns();
  double cpu = self_cpu() - cpu0;
  printf("{\"ev\":\"step\",\"id\":%d,\"rate\":%g,\"window\":%d,\"pubs\":%u,\"subs\":%u,\"send_s\":%.4f,\"span_s\":%.4f,"
         "\"drain_s\":%.3f,\"drained\":%s,\"gen_cpu_s\":%.4f,\"wall_s\":%.4f,\"skipped\":%llu,\"strays\":%llu,\"pub_rx\":%llu,"
         "\"acks\":%llu,\"ack_errors\":%llu,\"errors\":%llu,\"closed\":%llu,\"first_error\":\"%s\",\"sent\":[%llu,%llu,%llu],"
         "\"received\":[%llu,%llu,%llu],\"lat\":{",
         id, rate, window, npub, nsub, (tsend - t0) / 1e9, ((last_rx_ns ? last_rx_ns : tend2) - t0) / 1e9, (tend2 - tsend) / 1e9,
         drained ? "true" : "false", cpu, (tend2 - t0) / 1e9, (unsigned long long)skipped, (unsigned long long)strays,
         (unsigned long long)pub_rx, (unsigned long long)acks, (unsigned long long)ack_errors, (unsigned long long)errors,
         (unsigned long long)closed, first_error, (unsigned long long)sent[1], (unsigned long long)sent[2],
         (unsigned long long)sent[3], (unsigned long long)received[1], (unsigned long long)received[2],
         (unsigned long long)received[3]);
  hist_json("all", &hist[H_ALL], 0); hist_json("high", &hist[H_HIGH], 1); hist_json("normal", &hist[H_NORMAL], 1);
  hist_json("low", &hist[H_LOW], 1); hist_json("ack", &hist[H_ACK], 1);
  printf("},\"by_port\":[");
  for (int g = 0; g < nports; g++) {
    printf("%s{\"port\":%d,\"subs\":%u,\"received\":%llu,", g ? "," : "", ports[g], port_subs[g],
           (unsigned long long)port_received[g]);
    hist_json("lat", &port_hist[g], 0);
    printf("}");
  }
  printf("]}\n");
}

static void run_command(char *cmd) {
  char *tok = strtok(cmd, " \n");
  if (!tok) return;
  if (!strcmp(tok, "quit")) exit(0);
  if (!strcmp(tok, "connect")) cmd_connect(strtok(NULL, " \n"));
  else if (!strcmp(tok, "size")) { payload_size = atoi(strtok(NULL, " \n")); if (payload_size < 43) payload_size = 43; if (payload_size > MAX_PAYLOAD) payload_size = MAX_PAYLOAD; printf("{\"ev\":\"ok\"}\n"); }
  else if (!strcmp(tok, "template")) {
    int p = atoi(strtok(NULL, " \n"));
    if (p < 1 || p > 3) p = 2;
    tmpl[p].npre = unhex(strtok(NULL, " \n"), &tmpl[p].pre);
    tmpl[p].nsuf = unhex(strtok(NULL, " \n"), &tmpl[p].suf);
    tmpl[p].itail = atoi(strtok(NULL, " \n"));
    printf("{\"ev\":\"ok\"}\n");
  } else if (!strcmp(tok, "step")) {
    double a[8];
    for (int k = 0; k < 8; k++) { char *v = strtok(NULL, " \n"); a[k] = v ? atof(v) : 0; }
    cmd_step((int)a[0], a[1], a[2], (int)a[3], (int)a[4], (int)a[5], a[6], a[7]);
  } else if (!strcmp(tok, "reply")) {
    uint32_t k = (uint32_t)atoi(strtok(NULL, " \n"));
    static char hex[1 << 17];
    hex[0] = 0;
    if (k < nconns && conns[k].reply && conns[k].reply_n < sizeof hex / 2) tohex(hex, conns[k].reply, conns[k].reply_n);
    printf("{\"ev\":\"reply\",\"idx\":%u,\"hex\":\"%s\"}\n", k, hex);
  } else if (!strcmp(tok, "pause")) {
    uint32_t k = (uint32_t)atoi(strtok(NULL, " \n"));
    if (k < nconns && conns[k].state == ST_READY) { conns[k].paused = 1; epoll_ctl(epfd, EPOLL_CTL_DEL, conns[k].fd, NULL); }
    printf("{\"ev\":\"ok\"}\n");
  } else if (!strcmp(tok, "close")) {
    uint32_t n = 0;
    for (uint32_t k = 0; k < nconns; k++) if (conns[k].state != ST_DEAD) { kill_conn(&conns[k], 0); n++; }
    printf("{\"ev\":\"ok\",\"closed\":%u}\n", n);
  } else if (!strcmp(tok, "spin")) {
    spin = atoi(strtok(NULL, " \n"));
    printf("{\"ev\":\"ok\"}\n");
  } else if (!strcmp(tok, "poll")) {
    poll_for(atof(strtok(NULL, " \n")));
    uint32_t alive = 0;
    for (uint32_t k = 0; k < nconns; k++) alive += conns[k].state == ST_READY;
    printf("{\"ev\":\"polled\",\"alive\":%u,\"strays\":%llu}\n", alive, (unsigned long long)strays);
  } else printf("{\"ev\":\"error\",\"what\":\"unknown command\"}\n");
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: gen PORT\n"); return 2; }
  port = atoi(argv[1]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  conns = calloc(MAXCONN, sizeof(conn_t));
  epfd = epoll_create1(0);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
  epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
  printf("{\"ev\":\"hello\"}\n");
  for (;;) {
    while (line_ready) {
      char *nl = memchr(line, '\n', line_len);
      *nl = 0;
      static char cmd[sizeof line];
      memcpy(cmd, line, (size_t)(nl - line) + 1);
      line_len -= (size_t)(nl - line) + 1;
      memmove(line, nl + 1, line_len);
      line_ready = memchr(line, '\n', line_len) != NULL;
      run_command(cmd);
    }
    poll_once(50);
  }
}
