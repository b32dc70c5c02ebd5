// The report links here with the number in the URL fragment (#number=...), which the
// browser never sends to the server: keep it across the login and fill the form with it.
(function () {
  "use strict";
  var key = "simrecon.lookup.number";
  var match = /^#number=([0-9+ .-]{6,20})$/.exec(window.location.hash);
  if (match) {
    try { window.sessionStorage.setItem(key, match[1]); } catch (e) { /* storage off */ }
    history.replaceState(null, "", window.location.pathname);
  }
  var value = document.getElementById("value");
  var form = document.getElementById("lookup-form");
  if (!value || !form || value.value) { return; }
  var number = null;
  try { number = window.sessionStorage.getItem(key); } catch (e) { number = null; }
  if (number) {
    value.value = number;
    document.getElementById("kind-number").checked = true;
    try { window.sessionStorage.removeItem(key); } catch (e) { /* storage off */ }
    document.getElementById("case_reference").focus();
  }
}());
