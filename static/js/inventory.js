// Asset form: show the DICOM section only when the kind is "DICOM node".
document.addEventListener("DOMContentLoaded", function () {
  const kind = document.getElementById("kind");
  const section = document.getElementById("dicom-fields");
  if (!kind || !section) {
    return;
  }
  const update = function () {
    section.classList.toggle("d-none", kind.value !== "dicom_node");
  };
  kind.addEventListener("change", update);
  update();
});
