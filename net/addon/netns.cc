// The syscalls Node.js has none of: setns(2) — only the calling thread (the JS main thread)
// switches; callers must keep everything between the switch and the switch back synchronous —
// and flock(2), a lock the kernel drops when its holder's file is closed or the process dies.
#include <napi.h>
#include <sched.h>
#include <sys/file.h>
#include <errno.h>
#include <string.h>

// setns(fd, nstype) -> undefined; throws Error with .code = errno name on failure.
static Napi::Value SetNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "setns(fd, nstype) takes two numbers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int nstype = info[1].As<Napi::Number>().Int32Value();
  if (setns(fd, nstype) != 0) {
    int err = errno;
    const char* name = err == EINVAL ? "EINVAL" : err == EBADF ? "EBADF" : err == EPERM ? "EPERM" : err == ENOMEM ? "ENOMEM" : "EUNKNOWN";
    Napi::Error e = Napi::Error::New(env, std::string("setns: ") + strerror(err));
    e.Set("code", Napi::String::New(env, name));
    e.Set("errno", Napi::Number::New(env, err));
    e.ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// flock(fd, wait) -> true when the exclusive lock is held; false when wait is false and another
// open file holds it. Blocks the calling thread while waiting (the plugin has nothing else to do).
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

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setns", Napi::Function::New(env, SetNs));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("CLONE_NEWNET", Napi::Number::New(env, CLONE_NEWNET));
  return exports;
}

NODE_API_MODULE(netns, Init)
