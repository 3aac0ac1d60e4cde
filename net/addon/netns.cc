// What Node.js cannot do on its own, for the plugin and for flatnetd's CNI socket:
//   flock(2), a lock the kernel drops when its holder's file is closed or the process dies.
//   setns(2), which Node has none of. Only the calling thread (the JS main thread) switches;
//     callers must keep everything between the switch and the switch back synchronous.
//   peerCredentials(fd): SO_PEERCRED of a connected unix socket (Node exposes no socket options),
//     the kernel's record of who connected, which the peer cannot forge.
//   receiveFrame(fd, maxBytes, timeoutMs): one length-prefixed frame with the descriptors sent
//     along with it (SCM_RIGHTS). libuv reads stream sockets with read(2), which drops passed
//     descriptors, so the frame is read here, on a pool thread (poll + recvmsg), never blocking
//     the event loop.
#include <napi.h>
#include <sched.h>
#include <sys/file.h>
#include <errno.h>
#include <string.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <stdint.h>
#include <vector>
#include <string>

static const char* ErrnoName(int err) {
  switch (err) {
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case EPERM: return "EPERM";
    case ENOMEM: return "ENOMEM";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNRESET: return "ECONNRESET";
    case E2BIG: return "E2BIG";
    case EPROTO: return "EPROTO";
    case ENOTSOCK: return "ENOTSOCK";
    default: return "EUNKNOWN";
  }
}

static void ThrowErrno(Napi::Env env, const char* op, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(op) + ": " + strerror(err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
}

// setns(fd, nstype) -> undefined; throws Error with .code = errno name on failure.
static Napi::Value SetNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "setns(fd, nstype) takes two numbers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int nstype = info[1].As<Napi::Number>().Int32Value();
  if (setns(fd, nstype) != 0) ThrowErrno(env, "setns", errno);
  return env.Undefined();
}

// flock(fd, wait) -> true when the exclusive lock is held; false when wait is false and another
// open file holds it. Blocks the calling thread while waiting: callers inside flatnetd poll with wait false.
static Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
    Napi::TypeError::New(env, "flock(fd, wait) takes a number and a boolean").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool wait = info[1].As<Napi::Boolean>().Value();
  int rc;
  do {
    rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  int err = errno;
  if (err == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  const char* name = err == EBADF ? "EBADF" : err == ENOLCK ? "ENOLCK" : err == EINVAL ? "EINVAL" : "EUNKNOWN";
  Napi::Error e = Napi::Error::New(env, std::string("flock: ") + strerror(err));
  e.Set("code", Napi::String::New(env, name));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// peerCredentials(fd) -> { pid, uid, gid }
static Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "peerCredentials(fd) takes a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(info[0].As<Napi::Number>().Int32Value(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ThrowErrno(env, "getsockopt SO_PEERCRED", errno);
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

static int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

class FrameReceiver : public Napi::AsyncWorker {
 public:
  FrameReceiver(Napi::Env env, int fd, uint32_t maxBytes, int timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), max_(maxBytes), timeout_(timeoutMs) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    int64_t deadline = NowMs() + timeout_;
    size_t want = 4;  // the length prefix first, then the body it announces
    bool haveLength = false;
    char chunk[65536];
    for (;;) {
      if (haveLength && data_.size() >= want) break;
      int64_t left = deadline - NowMs();
      if (left <= 0) return Fail(ETIMEDOUT);
      struct pollfd p = {fd_, POLLIN, 0};
      int r = poll(&p, 1, (int)left);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Fail(errno);
      if (r == 0) return Fail(ETIMEDOUT);
      size_t room = haveLength ? want - data_.size() : 4 - data_.size();
      if (room > sizeof chunk) room = sizeof chunk;
      char control[CMSG_SPACE(sizeof(int) * 8)];
      struct iovec iov = {chunk, room};
      struct msghdr msg = {};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) return Fail(errno);
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
          int got;
          memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds_.push_back(got);
        }
      }
      // More descriptors than fit: the kernel closed the rest; the request is not what was sent.
      if (msg.msg_flags & MSG_CTRUNC) return Fail(EPROTO);
      if (n == 0) return Fail(ECONNRESET);
      data_.insert(data_.end(), chunk, chunk + n);
      if (!haveLength && data_.size() == 4) {
        const unsigned char* b = (const unsigned char*)data_.data();
        uint32_t body = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        announced_ = body;
        if (body > max_) return Fail(E2BIG);
        haveLength = true;
        want = 4 + (size_t)body;
        data_.reserve(want);
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("body", Napi::Buffer<char>::Copy(env, data_.data() + 4, data_.size() - 4));
    Napi::Array fds = Napi::Array::New(env, fds_.size());
    for (size_t i = 0; i < fds_.size(); i++) fds.Set((uint32_t)i, Napi::Number::New(env, fds_[i]));
    out.Set("fds", fds);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error&) override {
    for (int fd : fds_) close(fd);
    Napi::Env env = Env();
    Napi::Error e = Napi::Error::New(env, std::string("receive CNI request: ") + strerror(err_));
    e.Set("code", Napi::String::New(env, ErrnoName(err_)));
    e.Set("errno", Napi::Number::New(env, err_));
    e.Set("announcedBytes", Napi::Number::New(env, announced_));
    deferred_.Reject(e.Value());
  }

 private:
  void Fail(int err) {
    err_ = err;
    SetError(strerror(err));
  }
  Napi::Promise::Deferred deferred_;
  int fd_;
  uint32_t max_;
  int timeout_;
  int err_ = 0;
  uint32_t announced_ = 0;
  std::vector<char> data_;
  std::vector<int> fds_;
};

// receiveFrame(fd, maxBytes, timeoutMs) -> Promise<{ body: Buffer, fds: number[] }>
static Napi::Value ReceiveFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "receiveFrame(fd, maxBytes, timeoutMs) takes three numbers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new FrameReceiver(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Uint32Value(), info[2].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setns", Napi::Function::New(env, SetNs));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials));
  exports.Set("receiveFrame", Napi::Function::New(env, ReceiveFrame));
  exports.Set("CLONE_NEWNET", Napi::Number::New(env, CLONE_NEWNET));
  return exports;
}

NODE_API_MODULE(netns, Init)
