/* floor302.c: copied unchanged from the benchmark kit given to Tollgate's developers (bench/floor/floor302.c);
 * the canned-302 floor of benches/sipp/compare.sh. */
/* floor302: the least a UDP redirect server can do per call, as a CPU floor for the benchmark.
 * One thread, recvmmsg/sendmmsg in batches of 64. For each INVITE it copies Via/From/To/Call-ID/CSeq
 * into a canned 302 (adds a To tag); ACKs and everything else are absorbed. No parsing beyond
 * line starts, no transactions, no retransmission timers, no decision.  Usage: floor302 PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#define B 64
#define SZ 4096
static int hdr(const char *line, const char *name) { size_t n = strlen(name); return strncasecmp(line, name, n) == 0; }
int main(int argc, char **argv) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
  static char in[B][SZ], out[B][SZ];
  static struct sockaddr_in from[B];
  static struct iovec iv[B], ov[B];
  static struct mmsghdr im[B], om[B];
  for (int i = 0; i < B; i++) {
    iv[i].iov_base = in[i]; iv[i].iov_len = SZ - 1;
    im[i].msg_hdr.msg_iov = &iv[i]; im[i].msg_hdr.msg_iovlen = 1;
    im[i].msg_hdr.msg_name = &from[i]; im[i].msg_hdr.msg_namelen = sizeof from[i];
  }
  unsigned long tag = 1;
  for (;;) {
    int n = recvmmsg(fd, im, B, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    int k = 0;
    for (int i = 0; i < n; i++) {
      char *m = in[i]; m[im[i].msg_len] = 0;
      im[i].msg_hdr.msg_namelen = sizeof from[i];
      if (strncmp(m, "INVITE ", 7)) continue;
      char *o = out[k]; int len = sprintf(o, "SIP/2.0 302 Moved Temporarily\r\n");
      for (char *l = strstr(m, "\r\n") + 2; l && *l && !(l[0] == '\r' && l[1] == '\n');) {
        char *e = strstr(l, "\r\n"); if (!e) break;
        if (hdr(l, "Via:") || hdr(l, "From:") || hdr(l, "Call-ID:") || hdr(l, "CSeq:"))
          { memcpy(o + len, l, e - l + 2); len += e - l + 2; }
        else if (hdr(l, "To:")) { memcpy(o + len, l, e - l); len += e - l; len += sprintf(o + len, ";tag=f%lu\r\n", tag++); }
        l = e + 2;
      }
      len += sprintf(o + len, "Contact: <sip:support@acd.example.net>\r\nContent-Length: 0\r\n\r\n");
      ov[k].iov_base = o; ov[k].iov_len = len;
      om[k].msg_hdr.msg_iov = &ov[k]; om[k].msg_hdr.msg_iovlen = 1;
      om[k].msg_hdr.msg_name = &from[i]; om[k].msg_hdr.msg_namelen = sizeof from[i];
      k++;
    }
    if (k) sendmmsg(fd, om, k, 0);
  }
}
