// setns(2) for Node.js, which has none. Only the calling thread (the JS main thread) switches;
// callers must keep everything between the switch and the switch back synchronous.
#include <napi.h>
#include <sched.h>
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

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setns", Napi::Function::New(env, SetNs));
  exports.Set("CLONE_NEWNET", Napi::Number::New(env, CLONE_NEWNET));
  return exports;
}

NODE_API_MODULE(netns, Init)
