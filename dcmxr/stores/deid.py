"""De-identification of stored headers: the DICOM PS3.15 Basic Profile.

:func:`deidentify_dataset` applies the Basic Application Level Confidentiality
Profile (PS3.15 Annex E, table E.1-1, "Basic Profile" column) to a pydicom
Dataset, recursing into sequences:

* ``X`` attributes are removed, ``Z`` attributes are emptied, ``D``
  attributes get a dummy value of their VR;
* every UID attribute (VR ``UI``) that identifies an instance (study, series,
  SOP instance, frame of reference, referenced instances ...) is replaced by a
  new ``2.25.`` UID, consistently through one ``uid_map`` so references
  between instances stay intact; well-known UIDs (SOP classes, transfer
  syntaxes, coding schemes) are kept;
* private elements are removed (the profile's default);
* ``PatientIdentityRemoved`` is set to ``YES`` and
  ``DeidentificationMethod`` records the profile.

The map of old to new UIDs is returned to the caller and never stored in the
archive. The attribute list below covers the identifying attributes of the
Basic Profile that occur in image, RT and SR objects; it is not the whole of
table E.1-1 (for example, attributes only found in waveform or
ophthalmic objects are not listed).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from typing import Any

__all__ = ["deidentify_dataset", "new_uid", "BASIC_PROFILE"]

#: keyword -> action ("X" remove, "Z" empty, "D" dummy value) from PS3.15 E.1-1.
BASIC_PROFILE: dict[str, str] = {
    # patient
    "PatientName": "Z", "PatientID": "Z", "PatientBirthDate": "Z", "PatientSex": "Z",
    "PatientBirthTime": "X", "OtherPatientIDs": "X", "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X", "PatientBirthName": "X", "PatientMotherBirthName": "X",
    "PatientAddress": "X", "PatientTelephoneNumbers": "X", "PatientAge": "X", "PatientSize": "X",
    "PatientWeight": "X", "MedicalRecordLocator": "X", "EthnicGroup": "X", "Occupation": "X",
    "AdditionalPatientHistory": "X", "PatientComments": "X", "PatientReligiousPreference": "X",
    "MilitaryRank": "X", "BranchOfService": "X", "CountryOfResidence": "X", "RegionOfResidence": "X",
    "PatientInsurancePlanCodeSequence": "X", "PatientPrimaryLanguageCodeSequence": "X",
    "IssuerOfPatientID": "X", "PregnancyStatus": "X", "SmokingStatus": "X", "MedicalAlerts": "X",
    "Allergies": "X", "ResponsiblePerson": "X", "ResponsibleOrganization": "X",
    "PatientState": "X", "PatientTransportArrangements": "X", "SpecialNeeds": "X",
    # study / visit
    "StudyDate": "Z", "StudyTime": "Z", "AccessionNumber": "Z", "StudyID": "Z",
    "ReferringPhysicianName": "Z", "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X", "ReferringPhysicianIdentificationSequence": "X",
    "PhysiciansOfRecord": "X", "PhysiciansOfRecordIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X", "PhysiciansReadingStudyIdentificationSequence": "X",
    "RequestingPhysician": "X", "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X", "OperatorsName": "X",
    "OperatorIdentificationSequence": "X", "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X", "AdmissionID": "X", "StudyDescription": "X",
    "RequestAttributesSequence": "X", "RequestedProcedureDescription": "X",
    "RequestedProcedureID": "X", "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepID": "X", "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepID": "X", "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X", "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X", "ReasonForStudy": "X", "RequestingService": "X",
    "CurrentPatientLocation": "X", "InterpretationAuthor": "X", "IssuerOfAdmissionIDSequence": "X",
    # equipment / institution
    "InstitutionName": "X", "InstitutionAddress": "X", "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "X", "StationName": "X", "DeviceSerialNumber": "X",
    "DetectorID": "X", "PlateID": "X", "CassetteID": "X", "GantryID": "X", "ProtocolName": "X",
    # descriptions and free text
    "SeriesDescription": "X", "ImageComments": "X", "DerivationDescription": "X",
    "TextComments": "X", "TextString": "X", "ContentCreatorName": "Z", "ContentCreatorIdentificationCodeSequence": "X",
    "FrameComments": "X", "AcquisitionComments": "X", "AcquisitionDeviceProcessingDescription": "X",
    "ContrastBolusAgent": "D", "ImagePresentationComments": "X", "VerifyingObserverName": "D",
    "VerifyingObserverIdentificationCodeSequence": "Z", "VerifyingOrganization": "X",
    "PersonName": "D", "PersonIdentificationCodeSequence": "D", "ReviewerName": "X",
    # dates and times of the acquisition (kept empty rather than removed where Type 2)
    "SeriesDate": "X", "SeriesTime": "X", "AcquisitionDate": "X", "AcquisitionTime": "X",
    "AcquisitionDateTime": "X", "ContentDate": "Z", "ContentTime": "Z", "OverlayDate": "X",
    "OverlayTime": "X", "CurveDate": "X", "CurveTime": "X", "InstanceCreationDate": "X",
    "InstanceCreationTime": "X", "InstanceCreatorUID": "U",
    "StructureSetDate": "X", "StructureSetTime": "X", "RTPlanDate": "X", "RTPlanTime": "X",
    # misc
    "ReferencedPatientSequence": "X", "ReferencedStudySequence": "X", "OriginalAttributesSequence": "X",
    "ModifiedAttributesSequence": "X", "DigitalSignaturesSequence": "X", "DataSetTrailingPadding": "X",
}

#: UID attributes that name a well-known class or code, not an instance: kept.
_KEEP_UIDS = {
    "SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
    "ImplementationClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "ContextUID",
    "MappingResourceUID", "AffectedSOPClassUID", "RequestedSOPClassUID", "ReferencedTransferSyntaxUID",
    "SOPClassesInStudy",
}


_LOCK = threading.Lock()


def new_uid(old: str, uid_map: dict[str, str], salt: str = "") -> str:
    """The replacement for ``old`` in ``uid_map`` (made on first use).

    New UIDs are ``2.25.<decimal of a 128-bit value>``: random (UUID4) unless
    ``salt`` is given, then derived from ``salt`` and ``old`` with SHA-256 so a
    rerun with the same salt maps identically.
    """
    old = str(old).strip().rstrip("\x00")
    if not old:
        return old
    with _LOCK:  # headers are read in threads that share one map
        if old not in uid_map:
            if salt:
                val = int.from_bytes(hashlib.sha256((salt + "|" + old).encode()).digest()[:16], "big")
            else:
                val = uuid.uuid4().int
            uid_map[old] = f"2.25.{val}"
        return uid_map[old]


def _dummy(vr: str) -> Any:
    return {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS",
            "LO": "ANONYMOUS", "SH": "ANON", "CS": "ANON", "LT": "", "ST": "", "UT": "",
            "SQ": [], "IS": "0", "DS": "0"}.get(vr, "")


def deidentify_dataset(ds, uid_map: dict[str, str], *, salt: str = "") -> None:
    """Apply the Basic Profile to ``ds`` in place (file meta untouched).

    Parameters
    ----------
    ds : pydicom.Dataset
    uid_map : dict
        Old UID -> new UID; filled as UIDs are met and shared across calls so
        a whole study maps consistently.
    salt : str
        Make new UIDs deterministic (see :func:`new_uid`).
    """
    from pydicom.dataset import Dataset

    ds.remove_private_tags()
    for elem in list(ds):
        kw = elem.keyword
        if elem.tag == 0x7FE00010:
            continue
        action = BASIC_PROFILE.get(kw)
        if action == "X":
            del ds[elem.tag]
            continue
        if action == "Z":
            elem.value = [] if elem.VR == "SQ" else ""
            continue
        if action == "D":
            elem.value = _dummy(elem.VR)
            continue
        if elem.VR == "UI" and kw not in _KEEP_UIDS and elem.value:
            vals = elem.value if elem.VM > 1 else [elem.value]
            newv = [new_uid(v, uid_map, salt) for v in vals]
            elem.value = newv if elem.VM > 1 else newv[0]
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                if isinstance(item, Dataset):
                    deidentify_dataset(item, uid_map, salt=salt)
    if "StudyInstanceUID" in ds:  # the top level of an instance
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "dcmxr: DICOM PS3.15 Basic Application Level Confidentiality Profile"
